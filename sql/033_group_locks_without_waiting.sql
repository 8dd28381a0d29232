-- 033: what a review of 030-032 found.
--
-- Taking a FIFO group row "without waiting" still waited when the row did not exist yet: an
-- INSERT ... ON CONFLICT waits for another transaction inserting the same key. Two receives on
-- source queues sharing a dead-letter queue, each first to dead-letter into a new group the
-- other then reached, deadlocked (and a redrive inserting target groups unordered against a
-- batch send inserting them in order). mq_try_group locks an existing row with SKIP LOCKED,
-- and creates a missing one waiting at most 50 ms for a concurrent insert of it; either
-- failure is "busy", and the caller leaves the message for later.
--
-- A FIFO redrive without "to" left a group whole behind a message of it that can never move
-- (sent straight to the dead-letter queue, or from a queue since deleted): only messages with
-- a target now hold their group back.

-- Locks the row of FIFO group p_group of queue p_queue, creating it if need be, without
-- waiting for another transaction (but up to 50 ms for one that is creating the same row).
-- False when it is busy.
CREATE FUNCTION mq_try_group(p_queue int, p_group text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    prior text := current_setting('lock_timeout');
BEGIN
    PERFORM 1 FROM message_groups mg WHERE mg.queue_id = p_queue AND mg.group_id = p_group
    FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        RETURN true;
    END IF;
    IF EXISTS (SELECT 1 FROM message_groups mg
               WHERE mg.queue_id = p_queue AND mg.group_id = p_group) THEN
        RETURN false; -- another transaction holds it
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', '50ms', true);
        INSERT INTO message_groups (queue_id, group_id) VALUES (p_queue, p_group)
        ON CONFLICT DO NOTHING;
        PERFORM set_config('lock_timeout', prior, true);
    EXCEPTION WHEN lock_not_available THEN
        RETURN false; -- (the subtransaction's rollback restores lock_timeout)
    END;
    PERFORM 1 FROM message_groups mg WHERE mg.queue_id = p_queue AND mg.group_id = p_group
    FOR UPDATE SKIP LOCKED;
    RETURN FOUND;
END
$$;

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
            EXIT WHEN NOT mq_try_group(q.dead_letter_queue_id, p_group); -- busy: moved later
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

-- As in 031, with mq_try_group for the target groups and the NOT EXISTS above.
CREATE OR REPLACE FUNCTION mq_redrive_some(p_dlq int, p_to int, p_after bigint, p_upto bigint, p_limit int,
                                OUT moved int, OUT last_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    fifo boolean := (SELECT q.fifo FROM queues q WHERE q.id = p_dlq);
    groups text[];
    ids bigint[];
    r record;
BEGIN
    moved := 0;
    SELECT max(c.id) INTO last_id
    FROM (SELECT x.id FROM messages x WHERE x.queue_id = p_dlq AND x.id > p_after
            AND x.id <= p_upto ORDER BY x.id LIMIT p_limit) c;
    IF last_id IS NULL THEN
        RETURN;
    END IF;
    IF fifo THEN
        -- the dead-letter queue's groups that may move (locked)
        SELECT array_agg(f.group_id) INTO groups FROM (
            SELECT mg.group_id FROM message_groups mg
            WHERE mg.queue_id = p_dlq AND mg.in_flight_until <= now()
              AND mg.group_id IN (SELECT x.group_id FROM messages x WHERE x.queue_id = p_dlq
                                    AND x.id > p_after AND x.id <= last_id)
              AND NOT EXISTS (SELECT 1 FROM messages y
                              JOIN queues t ON t.id = coalesce(p_to, y.source_queue_id)
                              WHERE y.queue_id = p_dlq AND y.group_id = mg.group_id
                                AND y.id <= p_after)
            ORDER BY mg.group_id FOR UPDATE SKIP LOCKED) f;
        -- their target groups, locked in order without waiting: a receive on a source queue
        -- holds its group while it moves an exhausted message into this queue's
        PERFORM mq_try_group(s.t, s.g) FROM (
            SELECT DISTINCT coalesce(p_to, x.source_queue_id) AS t, x.group_id AS g
            FROM messages x JOIN queues t ON t.id = coalesce(p_to, x.source_queue_id)
            WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
              AND x.group_id = ANY (groups)
            ORDER BY 1, 2) s;
        WITH target AS MATERIALIZED ( -- those mq_try_group locked (ours: FOR UPDATE sees them)
            SELECT mg.queue_id, mg.group_id FROM message_groups mg
            WHERE (mg.queue_id, mg.group_id) IN (
                SELECT coalesce(p_to, x.source_queue_id), x.group_id FROM messages x
                WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
                  AND x.group_id = ANY (groups))
            ORDER BY mg.queue_id, mg.group_id FOR UPDATE SKIP LOCKED)
        SELECT array_agg(x.id ORDER BY x.id) INTO ids FROM messages x
        JOIN target t ON t.queue_id = coalesce(p_to, x.source_queue_id) AND t.group_id = x.group_id
        WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
          AND x.group_id = ANY (groups);
        PERFORM 1 FROM messages x WHERE x.queue_id = p_dlq AND x.id = ANY (ids) FOR UPDATE;
    ELSE
        WITH pick AS MATERIALIZED (
            SELECT x.id FROM messages x JOIN queues t ON t.id = coalesce(p_to, x.source_queue_id)
            WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
              AND x.visible_at <= now() -- a message a consumer holds stays where it is
            ORDER BY x.id FOR UPDATE OF x SKIP LOCKED)
        SELECT array_agg(pick.id ORDER BY pick.id) INTO ids FROM pick;
    END IF;
    FOR r IN WITH d AS (DELETE FROM messages m WHERE m.queue_id = p_dlq AND m.id = ANY (ids)
                        RETURNING m.*)
             SELECT * FROM d ORDER BY d.id LOOP
        INSERT INTO messages (queue_id, visible_at, sent_at, message_id, group_id, body_json,
                              body, attributes, payload_id)
        VALUES (coalesce(p_to, r.source_queue_id), now(), r.sent_at, r.message_id, r.group_id,
                r.body_json, r.body, r.attributes, r.payload_id);
        moved := moved + 1;
    END LOOP;
    IF moved > 0 THEN
        PERFORM mq_notify(q.id) FROM queues q
        WHERE q.id = p_to OR (p_to IS NULL AND q.dead_letter_queue_id = p_dlq);
    END IF;
END
$$;
