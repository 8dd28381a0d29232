-- 046: table names in the /metrics gauges are escaped.
--
-- rydes_gauges_base() (020) wrote every table of the schema as table="<name>" as it stood. A
-- table whose name holds a double quote, a backslash or a newline (an operator's, an
-- extension's) made the exposition invalid, and Prometheus refuses a whole scrape for one bad
-- line: every rydes series was lost. Label values are escaped as the text format asks (\\, \",
-- \n); the gauges are otherwise as in 020.

-- name="value" with value escaped for the Prometheus text format.
CREATE FUNCTION rydes_metric_label(p_name text, p_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('%s="%s"', p_name,
                  replace(replace(replace(p_value, '\', '\\'), '"', '\"'), E'\n', '\n'))
$$;

CREATE OR REPLACE FUNCTION rydes_gauges_base()
RETURNS TABLE (metric text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT l.metric, CASE WHEN l.label = '' THEN '' ELSE format('%s="%s"', l.name, l.label) END,
           coalesce(t.n, 0)::float8
    FROM (VALUES ('rydes_tasks', 'status', 'pending'), ('rydes_tasks', 'status', 'processing'),
                 ('rydes_tasks', 'status', 'succeeded'), ('rydes_tasks', 'status', 'failed'),
                 ('rydes_rfqs', 'outcome', 'running'), ('rydes_rfqs', 'outcome', 'all_answered'),
                 ('rydes_rfqs', 'outcome', 'timeout'),
                 ('rydes_fares', 'status', 'pending'), ('rydes_fares', 'status', 'running'),
                 ('rydes_fares', 'status', 'succeeded'), ('rydes_fares', 'status', 'failed'),
                 ('rydes_fares_needing_operator', '', ''),
                 ('rydes_saga_steps_compensated', '', '')) AS l(metric, name, label)
    LEFT JOIN work_count_totals t ON t.metric = l.metric AND t.label = l.label
    UNION ALL
    SELECT 'rydes_pg_dead_rows', rydes_metric_label('table', relname), n_dead_tup::float8
    FROM pg_stat_user_tables WHERE schemaname = current_schema()
    UNION ALL
    SELECT 'rydes_pg_live_rows', rydes_metric_label('table', relname), n_live_tup::float8
    FROM pg_stat_user_tables WHERE schemaname = current_schema()
    UNION ALL
    SELECT 'rydes_pg_last_autovacuum_seconds', rydes_metric_label('table', relname),
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
