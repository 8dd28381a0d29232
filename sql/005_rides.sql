-- 005: Wild Rydes ride completion: rides, idempotency keys, what the four ride services do,
-- and the topology (queues, dead-letter queues, the ride-completion topic, its subscriptions).

CREATE TABLE rides (
    seq           bigint        GENERATED ALWAYS AS IDENTITY UNIQUE, -- list order and cursor
    id            uuid          PRIMARY KEY,
    from_location text          NOT NULL,
    to_location   text          NOT NULL,
    customer      text          NOT NULL,
    unicorn       text,
    duration      numeric       NOT NULL CHECK (duration >= 0),
    distance      numeric       NOT NULL CHECK (distance >= 0),
    fare          numeric(12,2) NOT NULL CHECK (fare >= 0),
    correlation_id text         NOT NULL,
    submitted_at  timestamptz   NOT NULL DEFAULT now()
);

CREATE INDEX rides_customer ON rides (customer, seq);

COMMENT ON TABLE rides IS 'completed rides (POST /rides); each was published to ride-completion';

-- Idempotency-Key of a POST: the request's canonical SHA-256 and the resource it created.
-- Kept 48 hours (the sweeper removes older ones), so a retry within 24 hours always replays.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL, -- the kind of resource: 'rides', ...
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash text        NOT NULL,
    resource_id  uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- What the built-in ride services did (src/workers/ride_services.c). Each row is keyed by the
-- ride, so a redelivered message changes nothing twice.
CREATE TABLE ride_notifications (
    ride_id    uuid        PRIMARY KEY,
    customer   text        NOT NULL,
    message    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE loyalty_accounts (
    customer   text        PRIMARY KEY,
    points     bigint      NOT NULL DEFAULT 0,
    rides      bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE loyalty_credits (
    ride_id     uuid        PRIMARY KEY,
    customer    text        NOT NULL,
    points      bigint      NOT NULL,
    credited_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE datalake_rides (
    ride_id     uuid        PRIMARY KEY,
    ride        jsonb       NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE extraordinary_rides (
    ride_id    uuid          PRIMARY KEY,
    customer   text          NOT NULL,
    fare       numeric(12,2) NOT NULL,
    distance   numeric       NOT NULL,
    flagged_at timestamptz   NOT NULL DEFAULT now()
);

COMMENT ON TABLE ride_notifications IS 'customer-notification: the message each customer got';
COMMENT ON TABLE loyalty_credits IS 'customer-loyalty: points credited, once per ride';
COMMENT ON TABLE datalake_rides IS 'datalake-ingestion: one append-only row per ride';
COMMENT ON TABLE extraordinary_rides IS 'extraordinary-rides: rides that passed the filter';

-- Where every ride went: one row per ride with what each service has done with it.
CREATE VIEW ride_journeys AS
SELECT r.id, r.customer, r.fare, r.distance, r.submitted_at,
       n.created_at AS notified_at, l.points AS loyalty_points, d.ingested_at,
       e.flagged_at AS extraordinary_at
FROM rides r
LEFT JOIN ride_notifications n ON n.ride_id = r.id
LEFT JOIN loyalty_credits l ON l.ride_id = r.id
LEFT JOIN datalake_rides d ON d.ride_id = r.id
LEFT JOIN extraordinary_rides e ON e.ride_id = r.id;

-- Creates a queue with its dead-letter queue NAME-dlq (max receive count 5) unless it exists;
-- an existing queue keeps whatever attributes an operator gave it.
CREATE FUNCTION rydes_ensure_queue(p_name text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    dlq int;
    q int;
BEGIN
    SELECT id INTO q FROM queues WHERE name = p_name;
    IF FOUND THEN
        RETURN q;
    END IF;
    INSERT INTO queues (name) VALUES (p_name || '-dlq') ON CONFLICT (name) DO NOTHING;
    SELECT id INTO dlq FROM queues WHERE name = p_name || '-dlq';
    INSERT INTO queues (name, dead_letter_queue_id, max_receive_count)
    VALUES (p_name, dlq, 5) RETURNING id INTO q;
    RETURN q;
END
$$;

-- Creates topic p_topic unless it exists, and ensures its subscription named p_queue delivers
-- raw to queue p_queue with filter policy p_policy (NULL: none). Other subscriptions of the
-- topic (an operator's) are left alone.
CREATE FUNCTION rydes_ensure_subscription(p_topic text, p_queue text, p_policy jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t int;
    q int;
BEGIN
    INSERT INTO topics (name, fifo) VALUES (p_topic, p_topic LIKE '%.fifo')
    ON CONFLICT (name) DO NOTHING;
    SELECT id INTO t FROM topics WHERE name = p_topic;
    q := rydes_ensure_queue(p_queue);
    INSERT INTO subscriptions AS s (topic_id, name, queue_id, filter_policy, raw_delivery)
    VALUES (t, p_queue, q, p_policy, true)
    ON CONFLICT (topic_id, name) DO UPDATE
        SET queue_id = EXCLUDED.queue_id, url = NULL, filter_policy = EXCLUDED.filter_policy,
            filter_scope = 'attributes', raw_delivery = true, updated_at = now()
        WHERE s.queue_id IS DISTINCT FROM EXCLUDED.queue_id
           OR s.filter_policy IS DISTINCT FROM EXCLUDED.filter_policy
           OR s.filter_scope <> 'attributes' OR NOT s.raw_delivery;
END
$$;

-- The Wild Rydes part of the sweep (run by the sweeper after mq_sweep): idempotency keys older
-- than 48 hours, at most p_batch per call. Returns how many it deleted.
CREATE FUNCTION rydes_sweep(p_batch int) RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM idempotency_keys k WHERE (k.scope, k.key) IN (
            SELECT scope, key FROM idempotency_keys
            WHERE created_at < now() - interval '48 hours' ORDER BY created_at LIMIT p_batch)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
