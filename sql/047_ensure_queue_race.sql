-- 047: the topology's queues are made even when someone makes one at the same moment.
--
-- rydes_ensure_queue (005) looked the queue up and then inserted it: a queue made between the
-- two (a PUT /queues/{name}, an SQS CreateQueue: start-up's advisory lock holds back only other
-- start-ups) failed the insert with a unique violation, and the start-up with it. The insert
-- now gives way to a queue made meanwhile, which is then used as it stands, as an existing queue
-- always was (and the dead-letter queue made for it is removed again).
CREATE OR REPLACE FUNCTION rydes_ensure_queue(p_name text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    dlq int;
    made int;
    q int;
BEGIN
    SELECT id INTO q FROM queues WHERE name = p_name;
    IF FOUND THEN
        RETURN q;
    END IF;
    INSERT INTO queues (name) VALUES (p_name || '-dlq') ON CONFLICT (name) DO NOTHING
    RETURNING id INTO made;
    SELECT id INTO dlq FROM queues WHERE name = p_name || '-dlq';
    INSERT INTO queues (name, dead_letter_queue_id, max_receive_count)
    VALUES (p_name, dlq, 5) ON CONFLICT (name) DO NOTHING RETURNING id INTO q;
    IF q IS NULL THEN
        DELETE FROM queues WHERE id = made; -- ours, new, empty, used by nothing
        SELECT id INTO q FROM queues WHERE name = p_name;
    END IF;
    RETURN q;
END
$$;
