-- 017: the retention sweep skips queues with nothing due.
--
-- mq_sweep read the oldest p_window (10,000) messages of every queue on every sweep (once a
-- second by default) to find the expired ones: with 20 queues of 20,000 messages, a sweep took
-- ~600 ms of a backend when nothing was anywhere near expiry. Now each look at a queue also
-- notes when the oldest message it kept expires, and the queue is not looked at again before
-- then, or before a minute has passed, whichever is sooner (queue_sweeps). A queue where the sweep
-- saw more expired messages than it deleted (more than p_batch, or consumers deleting some of
-- them meanwhile) is looked at again at the next sweep.
--
-- The minute bounds how late a message that arrived with an old sent_at expires: dead-letter
-- moves and redrives keep the original sent_at under a new id, so such a message can be due
-- before the queue's noted time. The rest of mq_sweep is as in 015.
CREATE TABLE queue_sweeps (
    queue_id int         PRIMARY KEY,
    next_at  timestamptz NOT NULL -- the sweeper looks at the queue's expiry again from then on
);
COMMENT ON TABLE queue_sweeps IS 'when the retention sweep looks at each queue again';

CREATE OR REPLACE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
    expired bigint;
    kept timestamptz;
    walked bigint;
    upto bigint;
BEGIN
    FOR q IN SELECT x.id, make_interval(secs => x.retention_seconds) AS retention
             FROM queues x LEFT JOIN queue_sweeps s ON s.queue_id = x.id
             WHERE s.next_at IS NULL OR s.next_at <= now() LOOP
        WITH w AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                   ORDER BY id LIMIT p_window),
             d AS (DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
                       SELECT w.id FROM w WHERE w.sent_at < now() - q.retention LIMIT p_batch)
                   RETURNING 1)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM w WHERE w.sent_at < now() - q.retention),
               (SELECT min(w.sent_at) FROM w WHERE w.sent_at >= now() - q.retention)
        INTO k, expired, kept;
        n := n + k;
        INSERT INTO queue_sweeps (queue_id, next_at)
        VALUES (q.id, CASE WHEN expired > k THEN now()
                           ELSE least(kept + q.retention, now() + interval '1 minute') END)
        ON CONFLICT (queue_id) DO UPDATE SET next_at = excluded.next_at;
    END LOOP;
    DELETE FROM dedup_entries d WHERE d.ctid IN (
        SELECT ctid FROM dedup_entries WHERE expires_at < now() LIMIT p_batch);
    GET DIAGNOSTICS k = ROW_COUNT;
    DELETE FROM topic_dedup d WHERE d.ctid IN (
        SELECT ctid FROM topic_dedup WHERE expires_at < now() LIMIT p_batch);
    DELETE FROM push_deliveries d WHERE d.id IN (
        SELECT id FROM push_deliveries WHERE next_attempt_at = 'infinity'
          AND created_at < now() - interval '7 days' LIMIT p_batch);
    DELETE FROM queue_listeners WHERE until < now(); -- processes that died without cleaning up
    FOR q IN SELECT queue_id AS id FROM deleted_queues LOOP
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM messages x WHERE x.queue_id = q.id LIMIT p_batch);
        DELETE FROM message_groups WHERE queue_id = q.id;
        DELETE FROM queue_sweeps WHERE queue_id = q.id;
        DELETE FROM dedup_entries WHERE queue_id = q.id;
    END LOOP;
    DELETE FROM deleted_queues WHERE deleted_at < now() - interval '10 minutes';
    -- payloads nothing refers to any more (bounded work per sweep): the oldest p_batch, where
    -- garbage usually is (deliveries are consumed roughly in publish order), and the next
    -- p_batch after the cursor, which walks the whole table and starts over at its end
    SELECT after INTO walked FROM sweep_cursors WHERE name = 'payloads';
    upto := (SELECT max(w.id) FROM (SELECT id FROM payloads WHERE id > coalesce(walked, 0)
                                     ORDER BY id LIMIT p_batch) w);
    DELETE FROM payloads p WHERE p.id IN (
        SELECT x.id FROM ((SELECT id, created_at FROM payloads ORDER BY id LIMIT p_batch)
                          UNION
                          SELECT id, created_at FROM payloads
                          WHERE id > coalesce(walked, 0) AND id <= upto) x
        WHERE x.created_at < now() - interval '1 minute'
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload_id = x.id)
          AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.payload_id = x.id));
    UPDATE sweep_cursors SET after = coalesce(upto, 0) WHERE name = 'payloads';
    RETURN n + k;
END
$$;
