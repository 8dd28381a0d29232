-- 004: HTTP(S) push subscriptions, FIFO topics, and NOTIFY when topics or subscriptions change.
--
-- A subscription delivers into a queue or POSTs to a URL. A publish to URL subscriptions inserts
-- one push_deliveries row per URL in the publish's transaction; the push worker
-- (src/mq/push.c) claims due rows with SKIP LOCKED, POSTs, and deletes them on a 2xx, or
-- retries them with exponential backoff, and after max_attempts moves the message to the
-- subscription's dead-letter queue (or keeps the row as failed for an operator to see).
ALTER TABLE subscriptions
    ALTER COLUMN queue_id DROP NOT NULL,
    ADD COLUMN url                  text CHECK (url ~ '^https?://' AND length(url) <= 2048),
    ADD COLUMN dead_letter_queue_id int  REFERENCES queues (id) ON DELETE SET NULL,
    ADD COLUMN max_attempts         int  NOT NULL DEFAULT 10 CHECK (max_attempts BETWEEN 1 AND 100),
    ADD COLUMN min_delay_seconds    int  NOT NULL DEFAULT 1
                                         CHECK (min_delay_seconds BETWEEN 1 AND 3600),
    ADD COLUMN max_delay_seconds    int  NOT NULL DEFAULT 60
                                         CHECK (max_delay_seconds BETWEEN 1 AND 3600),
    ADD CHECK (min_delay_seconds <= max_delay_seconds),
    ADD CHECK ((queue_id IS NULL) <> (url IS NULL));

CREATE TABLE push_deliveries (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id int         NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    payload_id      bigint      NOT NULL,
    message_id      uuid        NOT NULL,
    body_json       boolean     NOT NULL,
    attributes      jsonb,      -- raw delivery: the attributes travel with the body
    raw             boolean     NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(), -- 'infinity' once failed for good
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

CREATE INDEX push_deliveries_due ON push_deliveries (next_attempt_at);
CREATE INDEX push_deliveries_payload ON push_deliveries (payload_id);

COMMENT ON TABLE push_deliveries IS
    'messages on their way to URL subscriptions; failed ones have next_attempt_at = infinity';

-- A push delivery that used up its attempts: into the subscription's dead-letter queue (as the
-- message the subscription would have POSTed, keeping its message id) if it has one, else kept
-- as failed (next_attempt_at = infinity) with its last error. True when dead-lettered.
CREATE FUNCTION mq_push_exhausted(p_id bigint, p_error text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    SELECT pd.message_id, pd.body_json, pd.attributes, pd.payload_id,
           s.dead_letter_queue_id AS dlq
    INTO d FROM push_deliveries pd JOIN subscriptions s ON s.id = pd.subscription_id
    WHERE pd.id = p_id;
    IF NOT FOUND OR d.dlq IS NULL THEN
        UPDATE push_deliveries SET next_attempt_at = 'infinity', last_error = p_error
        WHERE id = p_id;
        RETURN false;
    END IF;
    INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                          payload_id)
    VALUES (d.dlq, now(), d.message_id, d.body_json, '', d.attributes, d.payload_id);
    DELETE FROM push_deliveries WHERE id = p_id;
    PERFORM mq_notify(d.dlq);
    RETURN true;
END
$$;

-- FIFO topics deduplicate publishes over 5 minutes, before any subscription sees them.
CREATE TABLE topic_dedup (
    topic_id   int         NOT NULL,
    dedup_id   text        NOT NULL,
    message_id uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (topic_id, dedup_id)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- Publishes one message to FIFO (and standard) queues in one transaction: deduplicated by
-- p_dedup on topic p_topic (when both are given), each FIFO target queue gets the message
-- at the end of group p_group with its own sequence number, under the group's row lock (taken
-- in queue id order, so concurrent publishes cannot deadlock). p_targets/p_raws are the target
-- queues and whether each takes the raw payload; p_raw/p_env the payload ids. Returns the
-- message id kept (the original one for a duplicate), the deliveries made and whether the
-- publish was a duplicate.
CREATE FUNCTION mq_publish_fifo(p_topic int, p_dedup text, p_message_id uuid, p_group text,
                                p_targets int[], p_raws boolean[], p_raw bigint, p_env bigint,
                                p_body_json boolean, p_attributes jsonb,
                                OUT kept uuid, OUT deliveries int, OUT duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    kept := p_message_id;
    deliveries := 0;
    duplicate := false;
    IF p_topic IS NOT NULL AND p_dedup IS NOT NULL THEN
        INSERT INTO topic_dedup AS d (topic_id, dedup_id, message_id, expires_at)
        VALUES (p_topic, p_dedup, p_message_id, now() + interval '5 minutes')
        ON CONFLICT (topic_id, dedup_id) DO UPDATE
            SET message_id = EXCLUDED.message_id, expires_at = EXCLUDED.expires_at
            WHERE d.expires_at <= now();
        IF NOT FOUND THEN
            SELECT d.message_id INTO kept FROM topic_dedup d
            WHERE d.topic_id = p_topic AND d.dedup_id = p_dedup;
            duplicate := true;
            RETURN;
        END IF;
    END IF;
    FOR t IN
        SELECT x.q, x.raw, q.fifo, q.delay_seconds
        FROM unnest(p_targets, p_raws) AS x(q, raw) JOIN queues q ON q.id = x.q
        ORDER BY x.q
    LOOP
        IF t.fifo THEN
            PERFORM mq_touch_group(t.q, p_group);
        END IF;
        INSERT INTO messages (queue_id, visible_at, message_id, group_id, body_json, body,
                              attributes, payload_id)
        VALUES (t.q, now() + make_interval(secs => t.delay_seconds), p_message_id,
                CASE WHEN t.fifo THEN p_group END,
                CASE WHEN t.raw THEN p_body_json ELSE true END, '',
                CASE WHEN t.raw THEN p_attributes END,
                CASE WHEN t.raw THEN p_raw ELSE p_env END);
        PERFORM mq_notify(t.q);
        deliveries := deliveries + 1;
    END LOOP;
END
$$;

-- Every change to a topic or its subscriptions is announced on channel rydes_topics with the
-- topic id, so every process drops its cached copy at once (src/mq/topic_cache.c).
CREATE FUNCTION mq_topic_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'topics' THEN
        PERFORM pg_notify('rydes_topics', (CASE WHEN TG_OP = 'DELETE' THEN OLD.id
                                                ELSE NEW.id END)::text);
    ELSE
        PERFORM pg_notify('rydes_topics', (CASE WHEN TG_OP = 'DELETE' THEN OLD.topic_id
                                                ELSE NEW.topic_id END)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER topics_changed AFTER UPDATE OR DELETE ON topics
    FOR EACH ROW EXECUTE FUNCTION mq_topic_changed();
CREATE TRIGGER subscriptions_changed AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION mq_topic_changed();

DROP VIEW topic_subscriptions;
CREATE VIEW topic_subscriptions AS
SELECT t.name AS topic, s.name AS subscription, q.name AS queue, s.url, s.raw_delivery,
       s.filter_scope, s.filter_policy, d.name AS dead_letter_queue, s.max_attempts
FROM subscriptions s JOIN topics t ON t.id = s.topic_id
LEFT JOIN queues q ON q.id = s.queue_id LEFT JOIN queues d ON d.id = s.dead_letter_queue_id
ORDER BY t.name, s.name;

-- What is on its way to URL subscriptions, and what failed for good.
CREATE VIEW push_backlog AS
SELECT t.name AS topic, s.name AS subscription, s.url, d.message_id, d.attempts,
       CASE WHEN d.next_attempt_at = 'infinity' THEN 'failed'
            WHEN d.next_attempt_at > now() THEN 'waiting' ELSE 'due' END AS state,
       d.next_attempt_at, d.last_error, d.created_at
FROM push_deliveries d JOIN subscriptions s ON s.id = d.subscription_id
JOIN topics t ON t.id = s.topic_id
ORDER BY d.id;

-- The sweep of 002, plus: expired topic dedup ids, failed push deliveries older than a week,
-- and payloads neither a message nor a push delivery refers to.
CREATE OR REPLACE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
BEGIN
    FOR q IN SELECT id, retention_seconds FROM queues LOOP
        DELETE FROM messages m
        WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM (SELECT id, sent_at FROM messages
                              WHERE queue_id = q.id ORDER BY id LIMIT p_window) x
            WHERE x.sent_at < now() - make_interval(secs => q.retention_seconds)
            LIMIT p_batch);
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    DELETE FROM dedup_entries d WHERE d.ctid IN (
        SELECT ctid FROM dedup_entries WHERE expires_at < now() LIMIT p_batch);
    GET DIAGNOSTICS k = ROW_COUNT;
    DELETE FROM topic_dedup d WHERE d.ctid IN (
        SELECT ctid FROM topic_dedup WHERE expires_at < now() LIMIT p_batch);
    DELETE FROM push_deliveries d WHERE d.id IN (
        SELECT id FROM push_deliveries WHERE next_attempt_at = 'infinity'
          AND created_at < now() - interval '7 days' LIMIT p_batch);
    DELETE FROM queue_listeners WHERE until < now(); -- processes that died without cleaning up
    FOR q IN SELECT queue_id AS id FROM deleted_queues LOOP
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM messages x WHERE x.queue_id = q.id LIMIT p_batch);
        DELETE FROM message_groups WHERE queue_id = q.id;
        DELETE FROM dedup_entries WHERE queue_id = q.id;
    END LOOP;
    DELETE FROM deleted_queues WHERE deleted_at < now() - interval '10 minutes';
    -- payloads nothing refers to any more, among the oldest p_window (bounded work per
    -- sweep; payloads are consumed roughly in the order they were published)
    DELETE FROM payloads p WHERE p.id IN (
        SELECT x.id FROM (SELECT id, created_at FROM payloads ORDER BY id LIMIT p_window) x
        WHERE x.created_at < now() - interval '1 minute'
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload_id = x.id)
          AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.payload_id = x.id)
        LIMIT p_batch);
    RETURN n + k;
END
$$;
