-- 027: a consumer holds the message it handles. The worker framework (src/workers/consumer.c)
-- handles a received batch one message at a time, each in a transaction that commits the
-- handler's work with the ack; a message whose lease ran out meanwhile could be received,
-- handled and deleted by another consumer first, and the ack of the first (a delete of a message
-- already gone is a success) then committed its work a second time. Now each transaction
-- starts by locking the message under its receipt: another receive skips it while it is held
-- (SKIP LOCKED), and a message superseded or gone is not handled at all.

-- Locks the message p_id of queue p_queue for the transaction when p_nonce is still its
-- receipt: 0 held, 1 superseded (received again since), 2 gone. A FIFO message's group row is
-- locked first, in the order receives and mq_by_receipt lock (group, then messages).
CREATE FUNCTION mq_hold(p_queue int, p_id bigint, p_nonce bigint) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    g text;
    r bigint;
BEGIN
    SELECT m.group_id INTO g FROM messages m WHERE m.queue_id = p_queue AND m.id = p_id;
    IF NOT FOUND THEN
        RETURN 2;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM 1 FROM message_groups mg
        WHERE mg.queue_id = p_queue AND mg.group_id = g FOR UPDATE;
    END IF;
    SELECT m.receipt INTO r FROM messages m
    WHERE m.queue_id = p_queue AND m.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 2;
    END IF;
    RETURN CASE WHEN r IS NOT DISTINCT FROM p_nonce THEN 0 ELSE 1 END;
END
$$;
