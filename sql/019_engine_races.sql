-- 019: what a review of the engine's SQL found: three races and a retention gap, each with a
-- regression test (test_races.c, test_outbox.c, test_durability.c).
--
-- mq_purge locked the FIFO groups that existed, deleted the queue's messages, then its groups,
-- each statement with its own snapshot: a send to a new group that committed between the two
-- kept its message and lost its group row, and a message without its group is never handed
-- out. Messages and groups now go in one statement, under one snapshot: a send is either all
-- gone or all kept.
--
-- mq_move_exhausted_group read a group's head without a lock, deleted it, and inserted the
-- dead-letter copy whether or not the delete found it: a message that a consumer deleted (its
-- receipt still valid), the retention sweep or a redrive took meanwhile came back in the
-- dead-letter queue. The copy is now made from what the delete returned, and the delete
-- rechecks that the head is still visible and exhausted (a consumer that extended its lease
-- meanwhile keeps it).
--
-- mq_fanout_careful set aside any event whose delivery raised, transient errors too: a
-- deadlock or a lock timeout parked an event for an operator although the next try would have
-- delivered it. Transient errors (serialization and deadlock, insufficient resources, a lock
-- not available, operator intervention) now fail the whole call, which the fan-out thread
-- retries at its next poll. System errors (class 58, I/O) are not among them: one can be tied
-- to one event's data and would stop the outbox behind it. (QUERY_CANCELED never reached the
-- handler: OTHERS does not match it.)

CREATE OR REPLACE FUNCTION mq_purge(p_queue int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- locked first: a send to an existing group waits for the purge, then recreates the row
    PERFORM 1 FROM message_groups WHERE queue_id = p_queue ORDER BY group_id FOR UPDATE;
    WITH g AS (DELETE FROM message_groups WHERE queue_id = p_queue)
    DELETE FROM messages WHERE queue_id = p_queue;
END
$$;

CREATE OR REPLACE FUNCTION mq_move_exhausted_group(q queues, p_group text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    head messages;
BEGIN
    LOOP
        SELECT * INTO head FROM messages m
        WHERE m.queue_id = q.id AND m.group_id = p_group ORDER BY m.id LIMIT 1;
        EXIT WHEN NOT FOUND OR head.visible_at > now()
                  OR head.receive_count < q.max_receive_count;
        DELETE FROM messages m
        WHERE m.queue_id = q.id AND m.id = head.id
          AND m.visible_at <= now() AND m.receive_count >= q.max_receive_count
        RETURNING m.* INTO head;
        CONTINUE WHEN NOT FOUND; -- gone or changed meanwhile: look at the head again
        PERFORM mq_touch_group(q.dead_letter_queue_id, p_group);
        INSERT INTO messages (queue_id, visible_at, receive_count, first_received_at, sent_at,
                              message_id, group_id, source_queue_id, body_json, body,
                              attributes, payload_id)
        VALUES (q.dead_letter_queue_id, now(), head.receive_count, head.first_received_at,
                head.sent_at, head.message_id, head.group_id, q.id, head.body_json, head.body,
                head.attributes, head.payload_id);
    END LOOP;
END
$$;

-- Whether an error is one the next try may not meet (the caller retries rather than gives up).
CREATE FUNCTION mq_transient(p_sqlstate text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT left(p_sqlstate, 2) IN ('40', '53', '57') OR p_sqlstate = '55P03'
$$;

CREATE OR REPLACE FUNCTION mq_fanout_careful(p_max int, OUT events int, OUT deliveries int)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    events := 0;
    deliveries := 0;
    FOR r IN SELECT id FROM publish_outbox WHERE failed_at IS NULL ORDER BY id LIMIT p_max
             FOR UPDATE SKIP LOCKED LOOP
        BEGIN
            deliveries := deliveries + mq_fanout_rows(ARRAY[r.id]);
            events := events + 1;
        EXCEPTION WHEN OTHERS THEN
            IF mq_transient(SQLSTATE) THEN
                RAISE;
            END IF;
            UPDATE publish_outbox SET failed_at = now(), error = SQLERRM WHERE id = r.id;
        END;
    END LOOP;
END
$$;

-- The retention sweep looked only at the oldest p_window (10,000) ids of each queue. A message
-- that arrives with an old sent_at under a new id (a dead-letter move, a redrive) in a queue
-- deeper than that was kept past its retention until everything older had gone. Each look at a
-- queue now also reads the next p_window ids after a cursor (queue_sweeps.walked) that walks the
-- whole queue and starts over at its end: such a message is deleted at most about depth /
-- p_window looks late (a look a minute: 100 minutes at a million messages), and a look costs
-- two index ranges of p_window entries whatever the depth; while expired messages of the
-- windows remain undeleted (more than p_batch), the cursor stays. The rest is as in 017.
ALTER TABLE queue_sweeps ADD COLUMN walked bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN queue_sweeps.walked IS 'the retention sweep''s walk through the queue: the last id it looked at';

CREATE OR REPLACE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
    expired bigint;
    kept timestamptz;
    walked bigint;
    walked_to bigint;
    upto bigint;
BEGIN
    FOR q IN SELECT x.id, make_interval(secs => x.retention_seconds) AS retention,
                    coalesce(s.walked, 0) AS walked
             FROM queues x LEFT JOIN queue_sweeps s ON s.queue_id = x.id
             WHERE s.next_at IS NULL OR s.next_at <= now() LOOP
        WITH w AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                   ORDER BY id LIMIT p_window),
             w2 AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                      AND id > greatest(q.walked, (SELECT max(w.id) FROM w))
                    ORDER BY id LIMIT p_window),
             a AS (SELECT * FROM w UNION ALL SELECT * FROM w2),
             d AS (DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
                       SELECT a.id FROM a WHERE a.sent_at < now() - q.retention LIMIT p_batch)
                   RETURNING 1)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM a WHERE a.sent_at < now() - q.retention),
               (SELECT min(a.sent_at) FROM a WHERE a.sent_at >= now() - q.retention),
               (SELECT CASE WHEN count(*) = p_window THEN max(w2.id) ELSE 0 END FROM w2)
        INTO k, expired, kept, walked_to;
        IF expired > k THEN
            walked_to := q.walked; -- expired messages left behind: walk on once they are gone
        END IF;
        n := n + k;
        INSERT INTO queue_sweeps (queue_id, next_at, walked)
        VALUES (q.id, CASE WHEN expired > k THEN now()
                           ELSE least(kept + q.retention, now() + interval '1 minute') END,
                walked_to)
        ON CONFLICT (queue_id) DO UPDATE SET next_at = excluded.next_at, walked = excluded.walked;
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
