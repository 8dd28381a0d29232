-- 030: a FIFO receive locks only the groups it serves. mq_receive_fifo walked the ready groups
-- with a FOR loop over a query, which PL/pgSQL fetches ten rows at a time, and FOR UPDATE locks
-- each row as it is fetched: a receive of one message kept up to ten ready groups locked until
-- it committed, and concurrent receives skipped them (came back empty with groups available).
-- A loop over a bound cursor fetches one row at a time.
CREATE OR REPLACE FUNCTION mq_receive_fifo(q queues, p_max int, p_vt int, p_nonce bigint,
                                           p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    ready CURSOR FOR
        SELECT mg.group_id FROM message_groups mg
        WHERE mg.queue_id = q.id AND mg.in_flight_until <= now()
        ORDER BY mg.in_flight_until FOR UPDATE SKIP LOCKED;
    got int := 0;
    n int;
BEGIN
    FOR g IN ready LOOP
        IF q.dead_letter_queue_id IS NOT NULL THEN
            PERFORM mq_move_exhausted_group(q, g.group_id);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM messages m
                       WHERE m.queue_id = q.id AND m.group_id = g.group_id) THEN
            DELETE FROM message_groups mg
            WHERE mg.queue_id = q.id AND mg.group_id = g.group_id;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT * FROM mq_take_group(q, g.group_id, p_max - got, p_vt, p_nonce,
                                                 p_delete);
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
        EXIT WHEN got >= p_max;
    END LOOP;
END
$$;
