-- 039: gives a received message back as if that receive had not happened: visible at once,
-- its receive_count down by one. The consumer loop (src/workers/consumer.c) takes a FIFO
-- group's messages in one batch; when one fails, it hands back the group mates after it
-- unhandled, and those must not use up their max_receive_count for a message they did not
-- fail on (each retry of an always-failing head would otherwise take them to the dead-letter
-- queue with it, never handled). Same answers as mq_change_visibility: 0 done, 1 a superseded
-- receipt (nothing changed), 2 no such message. The group is locked and refreshed first, by
-- mq_by_receipt, so locks are taken in the order a receive takes them (group, then message).
CREATE FUNCTION mq_release_unreceived(p_queue int, p_id bigint, p_nonce bigint) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r int;
BEGIN
    r := mq_by_receipt(p_queue, p_id, p_nonce, 0);
    IF r = 0 THEN
        UPDATE messages m SET receive_count = greatest(m.receive_count - 1, 0)
        WHERE m.queue_id = p_queue AND m.id = p_id AND m.receipt = p_nonce;
    END IF;
    RETURN r;
END
$$;
