-- 055: a push delivery whose subscription became a queue's is delivered into that queue.
--
-- A URL subscription with deliveries pending cannot become a queue subscription (409), but a
-- publish planned from a process's cached subscriptions can still insert a push delivery after
-- such a change committed (the cache's window; or a publish whose snapshot predates the
-- change). The push worker found no URL and gave the delivery up without a POST, and no
-- dead-letter queue took it (a queue subscription has none): a message the publish had
-- accepted went nowhere. The worker now settles such a delivery with mq_push_without_url,
-- which puts it into the subscription's queue, in the form the URL had (raw or enveloped: the
-- form it was published in), after the queue's delay. Failing that (no queue, a FIFO queue,
-- one being deleted) it gives the delivery up as an exhausted one. A subscription that has a
-- URL again gets the delivery POSTed at once.
--
-- Returns 'queued', 'retried', or the give-up's 'dead-lettered' / 'failed'; NULL when the
-- delivery is gone or another claim holds it (p_attempts no longer its count).

CREATE FUNCTION mq_push_without_url(p_id bigint, p_attempts int, p_error text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    d record;
    q record;
BEGIN
    SELECT pd.attempts = p_attempts AS ours, s.url, s.queue_id, pd.message_id, pd.body_json,
           pd.attributes, pd.payload_id
    INTO d FROM push_deliveries pd JOIN subscriptions s ON s.id = pd.subscription_id
    WHERE pd.id = p_id FOR UPDATE OF pd;
    IF NOT FOUND OR NOT d.ours THEN
        RETURN NULL;
    END IF;
    IF d.url IS NOT NULL THEN -- a URL again: POSTed at once, this attempt not counted
        UPDATE push_deliveries SET attempts = attempts - 1, next_attempt_at = now()
        WHERE id = p_id;
        RETURN 'retried';
    END IF;
    IF d.queue_id IS NOT NULL THEN
        SELECT qq.delay_seconds, qq.fifo INTO q FROM queues qq
        WHERE qq.id = d.queue_id FOR KEY SHARE SKIP LOCKED;
        IF FOUND AND NOT q.fifo THEN
            INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                                  payload_id)
            VALUES (d.queue_id, now() + make_interval(secs => q.delay_seconds), d.message_id,
                    d.body_json, '', d.attributes, d.payload_id);
            DELETE FROM push_deliveries WHERE id = p_id;
            PERFORM mq_notify(d.queue_id);
            RETURN 'queued';
        END IF;
    END IF;
    RETURN CASE WHEN mq_push_exhausted(p_id, p_error) THEN 'dead-lettered' ELSE 'failed' END;
END
$$;
