-- 031: a redrive moves its messages in transactions of at most p_limit each (the caller loops,
-- src/mq/messages.c), and keeps FIFO groups in order. mq_redrive moved everything in one
-- statement: a large dead-letter queue ran into the statement timeout and rolled back whole,
-- and every target group it touched stayed locked until then. It locked those groups in the
-- order of the dead-letter queue's ids (a batch send locking two of them the other way round
-- deadlocked with it), inserted in the order DELETE ... RETURNING gave (not necessarily id
-- order), did not lock the dead-letter queue's groups (racing a receive there), and moved a
-- group's later messages while an earlier one was held (received from the dead-letter queue),
-- so a later redrive put that one behind them.
--
-- Moves the messages of dead-letter queue p_dlq among the next p_limit after id p_after (up to
-- p_upto: messages moved back into p_dlq get new ids above it) to p_to, or to the queue each
-- came from. A standard queue's message is moved unless it is in flight or locked. A FIFO
-- queue's messages move by group: a group is moved only while it is free (its row not locked by
-- a receive, a delete or a worker, nothing in flight), none of its messages at or before p_after
-- is still here (one skipped earlier) and its target group is free (its row lock taken without
-- waiting, in (queue, group) order), and then as its leading run, in id order; a group skipped
-- stays whole for a later redrive. Returns how many moved and the last id looked at (NULL:
-- nothing left).
CREATE FUNCTION mq_redrive_some(p_dlq int, p_to int, p_after bigint, p_upto bigint, p_limit int,
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
              AND NOT EXISTS (SELECT 1 FROM messages y WHERE y.queue_id = p_dlq
                                AND y.group_id = mg.group_id AND y.id <= p_after)
            ORDER BY mg.group_id FOR UPDATE SKIP LOCKED) f;
        -- their target groups, locked in order without waiting: a receive on a source queue
        -- holds its group while it moves an exhausted message into this queue's
        INSERT INTO message_groups (queue_id, group_id)
        SELECT DISTINCT coalesce(p_to, x.source_queue_id), x.group_id FROM messages x
        JOIN queues t ON t.id = coalesce(p_to, x.source_queue_id)
        WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
          AND x.group_id = ANY (groups)
        ON CONFLICT DO NOTHING;
        WITH target AS MATERIALIZED (
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

-- The whole redrive in one transaction, as before, for whoever calls it by hand; the gateway
-- calls mq_redrive_some in a loop.
CREATE OR REPLACE FUNCTION mq_redrive(p_dlq int, p_to int, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    total bigint := 0;
    upto bigint := (SELECT coalesce(max(id), 0) FROM messages WHERE queue_id = p_dlq);
    after bigint := 0;
    step record;
BEGIN
    LOOP
        SELECT * INTO step FROM mq_redrive_some(p_dlq, p_to, after, upto,
                                                least(1000, p_max - total)::int);
        EXIT WHEN step.last_id IS NULL;
        total := total + step.moved;
        after := step.last_id;
        EXIT WHEN total >= p_max;
    END LOOP;
    RETURN total;
END
$$;
