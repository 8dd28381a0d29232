-- 040: rydes_gauges() read publish_outbox twice per call (a count of pending and failed events,
-- then the oldest pending one's age), once per gateway process every five seconds. The fan-out
-- keeps the table near empty, but while it stalls the table grows and each call scanned it
-- twice. One pass now gives all three figures; the answers are the same.
CREATE OR REPLACE FUNCTION rydes_gauges()
RETURNS TABLE (metric text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    WITH c AS (
        SELECT count(*) FILTER (WHERE failed_at IS NULL) AS pending,
               count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed,
               min(created_at) FILTER (WHERE failed_at IS NULL) AS oldest
        FROM publish_outbox)
    SELECT * FROM rydes_gauges_base()
    UNION ALL
    SELECT 'rydes_outbox_events', format('state="%s"', s.state), s.n::float8
    FROM c, LATERAL (VALUES ('pending', c.pending), ('failed', c.failed)) AS s(state, n)
    UNION ALL
    SELECT 'rydes_outbox_oldest_pending_seconds', '',
           coalesce(extract(epoch FROM now() - c.oldest), 0)::float8
    FROM c
$$;
