-- 012: claims join their locked rows by ctid.
--
-- A claim locks rows in a CTE (FOR UPDATE SKIP LOCKED) and updates or deletes them by joining
-- back to messages. Joined by (queue_id, id), the planner may pick the queue's whole index as
-- the outer side when its statistics say the queue is empty (analysed while empty, then
-- filled): every claim then walks every message and every dead index entry of the queue. The
-- locked tuple's ctid cannot change while we hold its lock, so a TID scan is exact and the plan
-- cannot degrade. The join is by ctid alone: with the key columns in it too, a generic plan
-- that expects many claimed rows merge-joins against the queue's index from its first row. A row that a concurrent change made visible again after our snapshot is
-- locked through its update chain but not seen by the TID scan: it is skipped by this claim and
-- stays available, never lost or delivered twice. src/mq/messages.c's mq_claim does the same.

CREATE OR REPLACE FUNCTION mq_receive_standard(q queues, p_max int, p_vt int, p_nonce bigint,
                                    p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    max_rc int := CASE WHEN q.dead_letter_queue_id IS NULL THEN 2147483647
                       ELSE q.max_receive_count END;
BEGIN
    IF q.dead_letter_queue_id IS NOT NULL THEN
        FOR i IN 1..10 LOOP
            EXIT WHEN mq_move_exhausted(q.id, q.dead_letter_queue_id, max_rc, p_max) = 0;
        END LOOP;
    END IF;
    IF p_delete THEN
        RETURN QUERY
        WITH c AS (
            SELECT m.ctid AS t, m.id FROM messages m
            WHERE m.queue_id = q.id AND m.visible_at <= now() AND m.receive_count < max_rc
            ORDER BY m.id LIMIT p_max FOR UPDATE SKIP LOCKED
        )
        DELETE FROM messages m USING c WHERE m.ctid = c.t
        RETURNING m.queue_id, m.id, m.visible_at, m.receive_count + 1, p_nonce,
                  coalesce(m.first_received_at, now()), m.sent_at, m.message_id, m.group_id,
                  m.source_queue_id, m.body_json, m.body, m.attributes, m.payload_id;
        RETURN;
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT m.ctid AS t, m.id FROM messages m
        WHERE m.queue_id = q.id AND m.visible_at <= now() AND m.receive_count < max_rc
        ORDER BY m.id LIMIT p_max FOR UPDATE SKIP LOCKED
    )
    UPDATE messages m
    SET visible_at = now() + make_interval(secs => p_vt),
        receive_count = m.receive_count + 1,
        receipt = p_nonce,
        first_received_at = coalesce(m.first_received_at, now())
    FROM c WHERE m.ctid = c.t
    RETURNING m.*;
END
$$;
