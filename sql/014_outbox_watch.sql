-- 014: the publish outbox (013) where operators already look. stuck_work lists the events whose
-- delivery failed (with the error) and events that waited over a minute for the fan-out (no
-- process is delivering them); rydes_gauges() (/metrics) counts pending and failed events and
-- says how old the oldest pending one is. Both read publish_outbox, which the fan-out keeps near
-- empty. The view and the function of 010 stay as they were under a _base name; the new ones
-- add the outbox's rows to theirs.

ALTER VIEW stuck_work RENAME TO stuck_work_base;

CREATE VIEW stuck_work AS
SELECT * FROM stuck_work_base
UNION ALL
SELECT 'outbox', 'publish_outbox', o.message_id::text,
       CASE WHEN o.failed_at IS NOT NULL THEN 'delivery failed: ' || coalesce(o.error, '?')
            ELSE 'waiting for the fan-out' END,
       coalesce(o.failed_at, o.created_at)
FROM publish_outbox o
WHERE o.failed_at IS NOT NULL OR o.created_at < now() - interval '1 minute';

ALTER FUNCTION rydes_gauges() RENAME TO rydes_gauges_base;

CREATE FUNCTION rydes_gauges()
RETURNS TABLE (metric text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT * FROM rydes_gauges_base()
    UNION ALL
    SELECT 'rydes_outbox_events', format('state="%s"', s.state), s.n::float8
    FROM (SELECT count(*) FILTER (WHERE failed_at IS NULL) AS pending,
                 count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
          FROM publish_outbox) c,
         LATERAL (VALUES ('pending', c.pending), ('failed', c.failed)) AS s(state, n)
    UNION ALL
    SELECT 'rydes_outbox_oldest_pending_seconds', '',
           coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
    FROM publish_outbox WHERE failed_at IS NULL
$$;
