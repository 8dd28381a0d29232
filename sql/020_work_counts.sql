-- 020: the Wild Rydes gauges of /metrics without reading whole tables.
--
-- rydes_gauges counted tasks, RFQs and fares by state and the compensated saga steps over the
-- whole tables on every refresh (each process, every 5 s while scraped): 55 ms at 12,000 fares,
-- 120 ms at 200,000 fares with 800,000 steps, growing with history. The counts are now kept as
-- they change: a row trigger on each table appends +1/-1 changes to work_count_changes (insert
-- only, so concurrent transactions never wait on a counter row), rydes_sweep folds them into
-- work_counts, and a refresh reads the two small tables. Triggers fire only when a counted
-- column changes. The counts are exact and transactional: a change is counted when its row
-- commits, and the fold moves committed changes under one lock at a time.

CREATE TABLE work_counts (
    metric text   NOT NULL,
    label  text   NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (metric, label)
);

CREATE TABLE work_count_changes (
    metric text NOT NULL,
    label  text NOT NULL,
    n      int  NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000);

COMMENT ON TABLE work_counts IS 'Wild Rydes work by state, for /metrics: folded from work_count_changes';
COMMENT ON TABLE work_count_changes IS 'changes to work_counts not folded yet (+1/-1 per row that changed state)';

-- What operators and /metrics read: the counts including the changes not folded yet.
CREATE VIEW work_count_totals AS
SELECT metric, label, sum(n)::bigint AS n
FROM (SELECT metric, label, n FROM work_counts
      UNION ALL
      SELECT metric, label, n FROM work_count_changes) c
GROUP BY metric, label;

-- The row triggers: a row counted under label OLD_LABEL of METRIC (-1) now counts under
-- NEW_LABEL (+1); an insert has only the second, a delete only the first. Written out per table
-- as plain INSERTs: a change of state costs ~6 µs more (20,000 single-row updates of fares'
-- status: 22.5 µs each without the trigger, 28 with it; 55 through a helper function per
-- label). They run as the tables' owner (SECURITY DEFINER, search_path pinned): a data role
-- (RYDES_GRANT_ROLE) writing these tables needs no grant on work_count_changes, so its writes
-- keep working between this migration and the next grant.
CREATE FUNCTION work_count_tasks() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO work_count_changes VALUES ('rydes_tasks', NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO work_count_changes VALUES ('rydes_tasks', OLD.status, -1);
    ELSE
        INSERT INTO work_count_changes
        VALUES ('rydes_tasks', OLD.status, -1), ('rydes_tasks', NEW.status, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION work_count_rfqs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO work_count_changes
        VALUES ('rydes_rfqs', coalesce(NEW.completion_reason, 'running'), 1);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO work_count_changes
        VALUES ('rydes_rfqs', coalesce(OLD.completion_reason, 'running'), -1);
    ELSE
        INSERT INTO work_count_changes
        VALUES ('rydes_rfqs', coalesce(OLD.completion_reason, 'running'), -1),
               ('rydes_rfqs', coalesce(NEW.completion_reason, 'running'), 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION work_count_fares() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO work_count_changes VALUES ('rydes_fares', NEW.status, 1);
        IF NEW.needs_operator THEN
            INSERT INTO work_count_changes VALUES ('rydes_fares_needing_operator', '', 1);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO work_count_changes VALUES ('rydes_fares', OLD.status, -1);
        IF OLD.needs_operator THEN
            INSERT INTO work_count_changes VALUES ('rydes_fares_needing_operator', '', -1);
        END IF;
    ELSE
        IF OLD.status <> NEW.status THEN
            INSERT INTO work_count_changes
            VALUES ('rydes_fares', OLD.status, -1), ('rydes_fares', NEW.status, 1);
        END IF;
        IF OLD.needs_operator <> NEW.needs_operator THEN
            INSERT INTO work_count_changes
            VALUES ('rydes_fares_needing_operator', '', CASE WHEN NEW.needs_operator
                                                             THEN 1 ELSE -1 END);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- Only compensated steps are counted: the triggers fire when a step becomes or stops being one.
CREATE FUNCTION work_count_saga_steps() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO work_count_changes
    VALUES ('rydes_saga_steps_compensated', '',
            CASE WHEN TG_OP <> 'DELETE' AND NEW.status = 'compensated' THEN 1 ELSE -1 END);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_count AFTER INSERT OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION work_count_tasks();
CREATE TRIGGER tasks_count_change AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION work_count_tasks();
CREATE TRIGGER rfqs_count AFTER INSERT OR DELETE ON rfqs
    FOR EACH ROW EXECUTE FUNCTION work_count_rfqs();
CREATE TRIGGER rfqs_count_change AFTER UPDATE OF completion_reason ON rfqs
    FOR EACH ROW WHEN (OLD.completion_reason IS DISTINCT FROM NEW.completion_reason)
    EXECUTE FUNCTION work_count_rfqs();
CREATE TRIGGER fares_count AFTER INSERT OR DELETE ON fares
    FOR EACH ROW EXECUTE FUNCTION work_count_fares();
CREATE TRIGGER fares_count_change AFTER UPDATE OF status, needs_operator ON fares
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.needs_operator IS DISTINCT FROM NEW.needs_operator)
    EXECUTE FUNCTION work_count_fares();
CREATE TRIGGER saga_steps_count_insert AFTER INSERT ON saga_steps
    FOR EACH ROW WHEN (NEW.status = 'compensated') EXECUTE FUNCTION work_count_saga_steps();
CREATE TRIGGER saga_steps_count_delete AFTER DELETE ON saga_steps
    FOR EACH ROW WHEN (OLD.status = 'compensated') EXECUTE FUNCTION work_count_saga_steps();
CREATE TRIGGER saga_steps_count_change AFTER UPDATE OF status ON saga_steps
    FOR EACH ROW WHEN ((OLD.status = 'compensated') <> (NEW.status = 'compensated'))
    EXECUTE FUNCTION work_count_saga_steps();

-- After a TRUNCATE of a counted table (which bypasses row triggers): its metrics' counts go
-- back to zero. Exact: TRUNCATE holds the table exclusively, so no change to it is pending.
CREATE FUNCTION work_counts_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO work_count_changes (metric, label, n)
    SELECT t.metric, t.label, -t.n FROM work_count_totals t
    WHERE t.n <> 0 AND t.metric = ANY (CASE TG_TABLE_NAME
        WHEN 'tasks' THEN ARRAY['rydes_tasks']
        WHEN 'rfqs' THEN ARRAY['rydes_rfqs']
        WHEN 'fares' THEN ARRAY['rydes_fares', 'rydes_fares_needing_operator']
        WHEN 'saga_steps' THEN ARRAY['rydes_saga_steps_compensated'] END);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_count_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION work_counts_truncated();
CREATE TRIGGER rfqs_count_truncate AFTER TRUNCATE ON rfqs
    FOR EACH STATEMENT EXECUTE FUNCTION work_counts_truncated();
CREATE TRIGGER fares_count_truncate AFTER TRUNCATE ON fares
    FOR EACH STATEMENT EXECUTE FUNCTION work_counts_truncated();
CREATE TRIGGER saga_steps_count_truncate AFTER TRUNCATE ON saga_steps
    FOR EACH STATEMENT EXECUTE FUNCTION work_counts_truncated();

-- What is there now (the triggers above hold these tables until the migration commits).
INSERT INTO work_counts (metric, label, n)
SELECT 'rydes_tasks', status, count(*) FROM tasks GROUP BY status
UNION ALL
SELECT 'rydes_rfqs', coalesce(completion_reason, 'running'), count(*) FROM rfqs GROUP BY 2
UNION ALL
SELECT 'rydes_fares', status, count(*) FROM fares GROUP BY status
UNION ALL
SELECT 'rydes_fares_needing_operator', '', count(*) FROM fares WHERE needs_operator
UNION ALL
SELECT 'rydes_saga_steps_compensated', '', count(*) FROM saga_steps WHERE status = 'compensated';

-- Folds up to p_max committed changes into work_counts; one process at a time (another that
-- finds the lock taken leaves the changes to it), counters updated in key order.
CREATE FUNCTION work_counts_fold(p_max int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(495874320753) THEN
        RETURN 0;
    END IF;
    WITH d AS (DELETE FROM work_count_changes c WHERE c.ctid IN (
                   SELECT ctid FROM work_count_changes LIMIT p_max)
               RETURNING c.metric, c.label, c.n),
         f AS (INSERT INTO work_counts AS w (metric, label, n)
               SELECT metric, label, sum(n) FROM d GROUP BY metric, label ORDER BY metric, label
               ON CONFLICT (metric, label) DO UPDATE SET n = w.n + excluded.n
               RETURNING 1)
    SELECT count(*) FROM f INTO folded;
    RETURN folded;
END
$$;

-- The Wild Rydes part of the sweep, as in 005, and the fold of the work counts.
CREATE OR REPLACE FUNCTION rydes_sweep(p_batch int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    deleted bigint;
BEGIN
    WITH gone AS (
        DELETE FROM idempotency_keys k WHERE (k.scope, k.key) IN (
            SELECT scope, key FROM idempotency_keys
            WHERE created_at < now() - interval '48 hours' ORDER BY created_at LIMIT p_batch)
        RETURNING 1)
    SELECT count(*) FROM gone INTO deleted;
    PERFORM work_counts_fold(p_batch * 100);
    RETURN deleted;
END
$$;

-- The gauges of 010 with the four Wild Rydes counts read from work_count_totals (every label
-- listed, 0 where nothing was ever counted); the PostgreSQL health gauges as they were.
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
