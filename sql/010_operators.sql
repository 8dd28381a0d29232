-- 010: what operators read: views over the engine and the Wild Rydes tables (README,
-- "Inspecting Rydes with SQL"), and the indexes that let the dashboard list recent work.

-- The engine's tables as PostgreSQL sees them: dead tuples, when autovacuum last ran, size.
-- Churning tables (messages, message_groups, payloads) must keep n_dead_tup bounded.
CREATE VIEW engine_tables AS
SELECT s.relname AS table_name, s.n_live_tup AS live_rows, s.n_dead_tup AS dead_rows,
       s.last_autovacuum, s.last_autoanalyze, s.autovacuum_count,
       pg_total_relation_size(s.relid) AS total_bytes
FROM pg_stat_user_tables s
WHERE s.schemaname = current_schema()
ORDER BY s.n_dead_tup DESC;

-- The gauges /metrics reads from the database (src/api/ops_metrics.c caches them for a few seconds):
-- Wild Rydes work by state and PostgreSQL's health of the engine's tables. One row per series:
-- the metric name, its label set as Prometheus text ('' for none) and the value.
CREATE FUNCTION rydes_gauges()
RETURNS TABLE (metric text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT 'rydes_tasks', format('status="%s"', s), count(t.id)::float8
    FROM unnest(ARRAY['pending', 'processing', 'succeeded', 'failed']) AS s
    LEFT JOIN tasks t ON t.status = s GROUP BY s
    UNION ALL
    SELECT 'rydes_rfqs', format('outcome="%s"', o), count(r.id)::float8
    FROM unnest(ARRAY['running', 'all_answered', 'timeout']) AS o
    LEFT JOIN rfqs r ON coalesce(r.completion_reason, 'running') = o GROUP BY o
    UNION ALL
    SELECT 'rydes_fares', format('status="%s"', s), count(f.id)::float8
    FROM unnest(ARRAY['pending', 'running', 'succeeded', 'failed']) AS s
    LEFT JOIN fares f ON f.status = s GROUP BY s
    UNION ALL
    SELECT 'rydes_fares_needing_operator', '', count(*)::float8 FROM fares WHERE needs_operator
    UNION ALL
    SELECT 'rydes_saga_steps_compensated', '', count(*)::float8
    FROM saga_steps WHERE status = 'compensated'
    UNION ALL
    SELECT 'rydes_pg_dead_rows', format('table="%s"', relname), n_dead_tup::float8
    FROM pg_stat_user_tables WHERE schemaname = current_schema()
    UNION ALL
    SELECT 'rydes_pg_live_rows', format('table="%s"', relname), n_live_tup::float8
    FROM pg_stat_user_tables WHERE schemaname = current_schema()
    UNION ALL
    SELECT 'rydes_pg_last_autovacuum_seconds', format('table="%s"', relname),
           extract(epoch FROM greatest(last_autovacuum, last_vacuum))::float8
    FROM pg_stat_user_tables
    WHERE schemaname = current_schema() AND greatest(last_autovacuum, last_vacuum) IS NOT NULL
    UNION ALL
    SELECT 'rydes_pg_oldest_transaction_seconds', '',
           coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8
    FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL
    UNION ALL
    SELECT 'rydes_pg_xid_age', '', age(datfrozenxid)::float8
    FROM pg_database WHERE datname = current_database()
$$;

-- The dashboard's newest-first lists (GET /tasks, GET /rfqs, GET /fares) page by keyset on
-- (creation time, id), newest first: each reads one index backwards from its cursor instead of
-- sorting the table.
CREATE INDEX tasks_submitted ON tasks (submitted_at, id);
CREATE INDEX rfqs_submitted ON rfqs (submitted_at, id);
CREATE INDEX fares_created ON fares (created_at, id);

-- The life of a ride, one row per event in time order:
--   SELECT * FROM ride_timeline WHERE ride_id = '…' ORDER BY at;
-- request_id is the X-Request-Id of the POST /rides that submitted it; messages still waiting
-- in a queue for it show as "waiting in QUEUE".
CREATE VIEW ride_timeline AS
SELECT r.id AS ride_id, r.submitted_at AS at, 'submitted' AS event,
       format('%s -> %s, %s km, fare %s, request_id %s', r.from_location, r.to_location,
              r.distance, r.fare, r.correlation_id) AS detail
FROM rides r
UNION ALL
SELECT ride_id, created_at, 'customer-notification', message FROM ride_notifications
UNION ALL
SELECT ride_id, credited_at, 'customer-loyalty', points || ' points' FROM loyalty_credits
UNION ALL
SELECT ride_id, ingested_at, 'datalake-ingestion', NULL FROM datalake_rides
UNION ALL
SELECT ride_id, flagged_at, 'extraordinary-rides', format('fare %s, distance %s', fare, distance)
FROM extraordinary_rides
UNION ALL
SELECT f.ride_id, f.created_at, 'fare saga ' || f.id, f.status FROM fares f
WHERE f.ride_id IS NOT NULL
UNION ALL
SELECT f.ride_id, s.finished_at, 'saga step ' || s.name || ': ' || s.status, s.detail
FROM saga_steps s JOIN fares f ON f.id = s.fare_id
WHERE f.ride_id IS NOT NULL AND s.finished_at IS NOT NULL
UNION ALL
SELECT r.id, m.sent_at, 'waiting in ' || q.name, format('receive_count %s', m.receive_count)
FROM messages m JOIN queues q ON q.id = m.queue_id
JOIN rides r ON m.attributes -> 'correlation_id' ->> 'value' = r.correlation_id
             AND m.attributes -> 'customer' ->> 'value' = r.customer;

-- A prebooking's task from submission to its end: SELECT * FROM task_history WHERE task_id = …
CREATE VIEW task_history AS
SELECT t.id AS task_id, t.status, t.attempts, t.submitted_at, t.updated_at,
       t.updated_at - t.submitted_at AS took, t.error_title, t.error_detail,
       p.id AS prebooking_id, p.customer, p.pickup_at, s.ingested_at AS datalake_at,
       s.submission
FROM tasks t
LEFT JOIN prebookings p ON p.task_id = t.id
LEFT JOIN prebooking_submissions s ON s.task_id = t.id;

-- Every quote of every RFQ, cheapest first, with how long the unicorn took to answer.
CREATE VIEW rfq_board AS
SELECT r.id AS rfq_id, r.customer, r.status, r.completion_reason, q.unicorn, q.price, q.goodies,
       q.received_at - r.submitted_at AS answered_after,
       rank() OVER (PARTITION BY r.id ORDER BY q.price) AS price_rank
FROM rfqs r JOIN rfq_quotes q ON q.rfq_id = r.id;

-- A saga's steps in order, with the fare they belong to.
CREATE VIEW saga_timeline AS
SELECT f.id AS fare_id, f.ride_id, f.customer, f.amount, f.status AS fare_status, f.phase,
       f.needs_operator, s.position, s.name AS step, s.status, s.attempts,
       s.compensation_attempts, s.detail, s.started_at, s.finished_at,
       s.finished_at - s.started_at AS took
FROM fares f JOIN saga_steps s ON s.fare_id = f.id;

-- The slowest consumers: per queue, what waits, what is in flight, what came back, and how
-- long messages waited before their first receive (a full scan: for operators, not for
-- dashboards refreshing every second; /metrics has the cheap depths).
CREATE VIEW consumer_lag AS
SELECT q.name AS queue,
       count(m.id) FILTER (WHERE m.visible_at <= now()) AS waiting,
       count(m.id) FILTER (WHERE m.visible_at > now() AND m.receive_count > 0) AS in_flight,
       count(m.id) FILTER (WHERE m.receive_count > 1) AS redelivered,
       max(now() - m.sent_at) FILTER (WHERE m.visible_at <= now()) AS oldest_waiting,
       avg(m.first_received_at - m.sent_at) FILTER (WHERE m.first_received_at IS NOT NULL)
           AS avg_wait_before_receive
FROM queues q LEFT JOIN messages m ON m.queue_id = q.id
GROUP BY q.name;

-- What is stuck, whatever it is: messages delivered more than once and not acked, dead
-- letters, tasks open for over a minute, RFQs past their eta, fares waiting for an operator or
-- unfinished for over five minutes, and push deliveries that are retrying or failed.
CREATE VIEW stuck_work AS
SELECT 'message' AS kind, q.name AS place, m.message_id::text AS id,
       format('delivered %s times, not acknowledged', m.receive_count) AS state,
       m.sent_at AS since
FROM messages m JOIN queues q ON q.id = m.queue_id
WHERE m.receive_count > 1 AND m.source_queue_id IS NULL
UNION ALL
SELECT 'dead letter', q.name, m.message_id::text,
       format('from %s after %s receives', src.name, m.receive_count), m.sent_at
FROM messages m JOIN queues q ON q.id = m.queue_id JOIN queues src ON src.id = m.source_queue_id
UNION ALL
SELECT 'task', 'tasks', id::text, status, submitted_at FROM tasks
WHERE status IN ('pending', 'processing') AND submitted_at < now() - interval '1 minute'
UNION ALL
SELECT 'rfq', 'rfqs', id::text, 'running past its eta', eta FROM rfqs
WHERE status = 'running' AND eta < now() - interval '5 seconds'
UNION ALL
SELECT 'fare', 'fares', id,
       status || CASE WHEN needs_operator THEN ', needs an operator' ELSE '' END, updated_at
FROM fares
WHERE needs_operator OR (status IN ('pending', 'running')
                         AND updated_at < now() - interval '5 minutes')
UNION ALL
SELECT 'push', t.name || '/' || s.name, d.message_id::text,
       CASE WHEN d.next_attempt_at = 'infinity' THEN 'failed' ELSE 'retrying' END
           || format(' after %s attempts: %s', d.attempts, coalesce(d.last_error, '?')),
       d.created_at
FROM push_deliveries d JOIN subscriptions s ON s.id = d.subscription_id
JOIN topics t ON t.id = s.topic_id
WHERE d.attempts > 0;

-- Trace propagation: a fare remembers the X-Request-Id (and traceparent) of the request that
-- started it, so the saga's log lines and its outcome message carry them on.
ALTER TABLE fares ADD COLUMN request_id text, ADD COLUMN traceparent text;

DROP FUNCTION saga_start(text, uuid, text, numeric, text, text, text[]);
CREATE FUNCTION saga_start(p_id text, p_ride uuid, p_customer text, p_amount numeric,
                           p_last4 text, p_hash text, p_steps text[], p_request_id text,
                           p_traceparent text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fares (id, ride_id, customer, amount, card_last4, request_hash, request_id,
                       traceparent)
    VALUES (p_id, p_ride, p_customer, p_amount, p_last4, p_hash, p_request_id, p_traceparent)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO saga_steps (fare_id, position, name)
    SELECT p_id, s.i - 1, s.name FROM unnest(p_steps) WITH ORDINALITY AS s(name, i);
    RETURN true;
END
$$;
