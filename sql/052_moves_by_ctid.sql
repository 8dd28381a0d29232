-- 052: a dead-letter move finds the rows it locked without walking the rest of the queue.
--
-- Pool connections keep one generic plan per statement for their lifetime, planned on first use;
-- on a new database that is against empty tables. mq_move_exhausted (041) joined the rows its
-- CTE locked back to messages by (queue_id, id): planned on an empty queue, the join's outer
-- side was an index scan over every message of the queue, so each move of up to ten exhausted
-- messages read the whole queue (a backlog behind a poison head was drained in quadratic time,
-- until autovacuum happened to invalidate the plan). The rows are joined by ctid now, as claims
-- have been since 012: a TID scan whatever the statistics say.

CREATE OR REPLACE FUNCTION mq_move_exhausted(p_queue int, p_dlq int, p_max_rc int, p_max int)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    -- the head as it stands, locked rows included: an exhausted message behind rows other
    -- receives hold may wait for a later receive (claims skip it meanwhile; nothing is lost)
    IF NOT EXISTS (SELECT 1 FROM (SELECT m.receive_count FROM messages m
                                  WHERE m.queue_id = p_queue AND m.visible_at <= now()
                                  ORDER BY m.id LIMIT p_max) h
                   WHERE h.receive_count >= p_max_rc) THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM queues s JOIN queues d ON d.id = s.dead_letter_queue_id
    WHERE s.id = p_queue AND d.id = p_dlq FOR KEY SHARE OF d SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0; -- they stay, and are not delivered while the queue counts them exhausted
    END IF;
    WITH c AS (
        SELECT m.ctid AS t FROM messages m
        WHERE m.queue_id = p_queue AND m.visible_at <= now()
        ORDER BY m.id LIMIT p_max FOR UPDATE SKIP LOCKED
    ), moved AS (
        DELETE FROM messages m USING c
        WHERE m.ctid = c.t AND m.receive_count >= p_max_rc
        RETURNING m.*
    )
    INSERT INTO messages (queue_id, visible_at, receive_count, first_received_at, sent_at,
                          message_id, group_id, source_queue_id, body_json, body, attributes,
                          payload_id)
    SELECT p_dlq, now(), receive_count, first_received_at, sent_at, message_id, group_id,
           p_queue, body_json, body, attributes, payload_id
    FROM moved ORDER BY id; -- in the order they were sent, whatever order the TID scan found
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
