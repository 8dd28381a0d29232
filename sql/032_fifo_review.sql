-- 032: what a review of the FIFO engine found (test_fifo.c, test_races.c).
--
-- mq_move_exhausted_group waited for the dead-letter queue's group row while its receive held
-- the source queue's group: two source queues sharing a dead-letter queue, receiving groups in
-- opposite orders, deadlocked (as did a receive against a purge or a batch send to the
-- dead-letter queue, which lock in name order), and a receive that waited handed out leases
-- that had partly run out. It also inserted into the dead-letter queue without locking its row:
-- a dead-letter queue deleted meanwhile took the message with it. Now it takes the dead-letter
-- queue's row (FOR KEY SHARE) and group row without waiting; when either is busy or gone, the
-- exhausted head stays where it is and the receive serves other groups (mq_take_group takes
-- nothing from a group whose head is exhausted), to be moved by a later receive.
CREATE OR REPLACE FUNCTION mq_move_exhausted_group(q queues, p_group text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    head messages;
    locked boolean := false;
BEGIN
    LOOP
        SELECT * INTO head FROM messages m
        WHERE m.queue_id = q.id AND m.group_id = p_group ORDER BY m.id LIMIT 1;
        EXIT WHEN NOT FOUND OR head.visible_at > now()
                  OR head.receive_count < q.max_receive_count;
        IF NOT locked THEN
            PERFORM 1 FROM queues d WHERE d.id = q.dead_letter_queue_id
            FOR KEY SHARE SKIP LOCKED;
            EXIT WHEN NOT FOUND; -- being deleted, or gone
            INSERT INTO message_groups (queue_id, group_id)
            VALUES (q.dead_letter_queue_id, p_group) ON CONFLICT DO NOTHING;
            PERFORM 1 FROM message_groups mg
            WHERE mg.queue_id = q.dead_letter_queue_id AND mg.group_id = p_group
            FOR UPDATE SKIP LOCKED;
            EXIT WHEN NOT FOUND; -- busy: a later receive moves it
            locked := true;
        END IF;
        DELETE FROM messages m
        WHERE m.queue_id = q.id AND m.id = head.id
          AND m.visible_at <= now() AND m.receive_count >= q.max_receive_count
        RETURNING m.* INTO head;
        CONTINUE WHEN NOT FOUND; -- gone or changed meanwhile: look at the head again
        INSERT INTO messages (queue_id, visible_at, receive_count, first_received_at, sent_at,
                              message_id, group_id, source_queue_id, body_json, body,
                              attributes, payload_id)
        VALUES (q.dead_letter_queue_id, now(), head.receive_count, head.first_received_at,
                head.sent_at, head.message_id, head.group_id, q.id, head.body_json, head.body,
                head.attributes, head.payload_id);
    END LOOP;
END
$$;

-- A delete or visibility change that reopens a FIFO group with messages left, or releases a
-- message (visibility 0), now wakes the queue's long polls: they used to wait for the hub's
-- once-a-second look. The rest is as in 002.
CREATE OR REPLACE FUNCTION mq_by_receipt(p_queue int, p_id bigint, p_nonce bigint, p_secs int)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    g text;
BEGIN
    SELECT m.group_id INTO g FROM messages m WHERE m.queue_id = p_queue AND m.id = p_id;
    IF NOT FOUND THEN
        RETURN 2;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM 1 FROM message_groups mg
        WHERE mg.queue_id = p_queue AND mg.group_id = g FOR UPDATE;
    END IF;
    IF p_secs IS NULL THEN
        DELETE FROM messages m
        WHERE m.queue_id = p_queue AND m.id = p_id AND m.receipt = p_nonce;
    ELSE
        UPDATE messages m SET visible_at = now() + make_interval(secs => p_secs)
        WHERE m.queue_id = p_queue AND m.id = p_id AND m.receipt = p_nonce;
    END IF;
    IF NOT FOUND THEN
        PERFORM 1 FROM messages m WHERE m.queue_id = p_queue AND m.id = p_id;
        RETURN CASE WHEN FOUND THEN 1 ELSE 2 END;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM mq_refresh_group(p_queue, g);
        IF EXISTS (SELECT 1 FROM message_groups mg WHERE mg.queue_id = p_queue
                     AND mg.group_id = g AND mg.in_flight_until <= now())
           AND EXISTS (SELECT 1 FROM messages m WHERE m.queue_id = p_queue AND m.group_id = g
                         AND m.visible_at <= now()) THEN
            PERFORM mq_notify(p_queue);
        END IF;
    ELSIF p_secs = 0 THEN
        PERFORM mq_notify(p_queue);
    END IF;
    RETURN 0;
END
$$;

-- The retention sweep deleted FIFO messages in flight without reopening their groups: a group
-- stayed closed until the deleted message's lease would have ended (up to 12 hours after a
-- heartbeat), with nothing in flight. The groups of such messages are now refreshed, without
-- waiting for a group another transaction holds (a delete or visibility change there refreshes
-- it itself; receives hold only open groups). The rest is as in 019.
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
    closed text[];
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
                   RETURNING m.group_id, m.receive_count > 0 AND m.visible_at > now() AS held)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM a WHERE a.sent_at < now() - q.retention),
               (SELECT min(a.sent_at) FROM a WHERE a.sent_at >= now() - q.retention),
               (SELECT CASE WHEN count(*) = p_window THEN max(w2.id) ELSE 0 END FROM w2),
               (SELECT array_agg(DISTINCT d.group_id) FROM d
                WHERE d.held AND d.group_id IS NOT NULL)
        INTO k, expired, kept, walked_to, closed;
        IF closed IS NOT NULL THEN -- FIFO groups whose message in flight expired: reopen
            UPDATE message_groups g SET in_flight_until = coalesce(
                (SELECT max(m.visible_at) FROM messages m
                 WHERE m.queue_id = q.id AND m.group_id = g.group_id
                   AND m.receive_count > 0 AND m.visible_at > now()), now())
            WHERE g.ctid IN (SELECT x.ctid FROM message_groups x
                             WHERE x.queue_id = q.id AND x.group_id = ANY (closed)
                             FOR UPDATE SKIP LOCKED);
        END IF;
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
