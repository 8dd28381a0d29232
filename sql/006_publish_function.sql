-- 006: the common publish as a function, and topic-cache notifications for TRUNCATE.
--
-- The common publish as a function, so that a caller can publish inside its own statement
-- (POST /rides stores a ride and publishes it in one statement: src/rydes/rides.c).
--
-- Stores p_body once in payloads and puts one message per entry of p_queues (a queue named twice
-- gets two) into those queues, each as a message with body_json p_body_json and attributes
-- p_attributes; NOTIFYs the queues in p_notify (those with long polls waiting). The caller has
-- evaluated the filters (src/mq/topics.c: mq_publish_plan). Returns the messages written.
CREATE FUNCTION mq_publish_payload(p_message_id uuid, p_body text, p_body_json boolean,
                                   p_attributes jsonb, p_queues int[], p_notify int[])
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    pid bigint;
    n int;
BEGIN
    IF cardinality(p_queues) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO payloads (body) VALUES (p_body) RETURNING id INTO pid;
    INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                          payload_id)
    SELECT t.q, now() + make_interval(secs => q.delay_seconds), p_message_id, p_body_json, '',
           p_attributes, pid
    FROM unnest(p_queues) AS t(q) JOIN queues q ON q.id = t.q;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_notify('rydes_mq', x::text) FROM unnest(p_notify) AS x;
    RETURN n;
END
$$;

-- TRUNCATE fires no row triggers: announce it as "any topic may have changed" (topic id 0).
CREATE FUNCTION mq_topics_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rydes_topics', '0');
    RETURN NULL;
END
$$;

CREATE TRIGGER topics_truncated AFTER TRUNCATE ON topics
    FOR EACH STATEMENT EXECUTE FUNCTION mq_topics_truncated();
CREATE TRIGGER subscriptions_truncated AFTER TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION mq_topics_truncated();
