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
