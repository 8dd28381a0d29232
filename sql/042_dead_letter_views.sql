-- 042: dead letters operators could not see. A push delivery given up into its subscription's
-- dead-letter queue keeps no source queue (it came from a topic), and dead_letters and
-- stuck_work listed only messages with one; stuck_work also dropped dead letters whose source
-- queue was deleted since. Both views now list every message in a subscription's dead-letter
-- queue too (source_queue empty; a message sent there directly looks the same), and
-- stuck_work names a deleted source as such and lists those messages once, as dead letters.
-- The index serves these views, /metrics' flag of dead-letter queues and the ON DELETE SET
-- NULL of a queue's deletion.
CREATE INDEX subscriptions_dead_letter_queue ON subscriptions (dead_letter_queue_id)
WHERE dead_letter_queue_id IS NOT NULL;

CREATE OR REPLACE VIEW dead_letters AS
SELECT q.name AS dead_letter_queue, src.name AS source_queue, m.message_id, m.group_id,
       m.receive_count, m.sent_at, m.first_received_at, src.max_receive_count,
       left(CASE WHEN m.payload_id IS NULL THEN m.body
                 ELSE (SELECT p.body FROM payloads p WHERE p.id = m.payload_id) END, 200)
           AS body_start
FROM messages m
JOIN queues q ON q.id = m.queue_id
LEFT JOIN queues src ON src.id = m.source_queue_id
WHERE m.source_queue_id IS NOT NULL
   OR m.queue_id IN (SELECT s.dead_letter_queue_id FROM subscriptions s
                     WHERE s.dead_letter_queue_id IS NOT NULL);

-- As in 010, with the dead letters above (stuck_work, 014, adds the outbox's rows to these).
CREATE OR REPLACE VIEW stuck_work_base AS
SELECT 'message' AS kind, q.name AS place, m.message_id::text AS id,
       format('delivered %s times, not acknowledged', m.receive_count) AS state,
       m.sent_at AS since
FROM messages m JOIN queues q ON q.id = m.queue_id
WHERE m.receive_count > 1 AND m.source_queue_id IS NULL
  AND m.queue_id NOT IN (SELECT s.dead_letter_queue_id FROM subscriptions s
                         WHERE s.dead_letter_queue_id IS NOT NULL)
UNION ALL
SELECT 'dead letter', q.name, m.message_id::text,
       CASE WHEN m.source_queue_id IS NULL THEN 'in a push subscription''s dead-letter queue'
            ELSE format('from %s after %s receives', coalesce(src.name, 'a deleted queue'),
                        m.receive_count) END,
       m.sent_at
FROM messages m JOIN queues q ON q.id = m.queue_id LEFT JOIN queues src ON src.id = m.source_queue_id
WHERE m.source_queue_id IS NOT NULL
   OR m.queue_id IN (SELECT s.dead_letter_queue_id FROM subscriptions s
                     WHERE s.dead_letter_queue_id IS NOT NULL)
UNION ALL
SELECT 'task', 'tasks', id::text, status, submitted_at FROM tasks
WHERE status IN ('pending', 'processing') AND submitted_at < now() - interval '1 minute'
UNION ALL
SELECT 'rfq', 'rfqs', id::text, 'running past its eta', eta FROM rfqs
WHERE status = 'running' AND eta < now() - interval '5 seconds'
UNION ALL
SELECT 'fare', 'fares', id,
       status || CASE WHEN needs_operator THEN ', needs an operator' ELSE '' END, updated_at
FROM fares
WHERE needs_operator OR (status IN ('pending', 'running')
                         AND updated_at < now() - interval '5 minutes')
UNION ALL
SELECT 'push', t.name || '/' || s.name, d.message_id::text,
       CASE WHEN d.next_attempt_at = 'infinity' THEN 'failed' ELSE 'retrying' END
           || format(' after %s attempts: %s', d.attempts, coalesce(d.last_error, '?')),
       d.created_at
FROM push_deliveries d JOIN subscriptions s ON s.id = d.subscription_id
JOIN topics t ON t.id = s.topic_id
WHERE d.attempts > 0;
