-- 051: the sweeps' statements keep their cost whatever plan PostgreSQL caches for them.
--
-- The sweeper's connection plans its statements as any session does: PL/pgSQL keeps a generic
-- plan per statement for the connection's lifetime once it looks no dearer than the custom
-- ones. Made while a table was empty and had no statistics (a new database, the gateway just
-- started), the retention statement of mq_sweep (043) joined its few expired ids with a nested
-- loop whose outer side was the whole queue: every message of the queue compared with each of
-- up to p_batch expired ids. With 100,000 expired messages in one queue a sweep took 9 s; in a
-- bench run it hit the sweeper's 60 s statement timeout seven times in a row, rolling each
-- sweep back, so nothing expired while a TRUNCATE waited behind it. The other deletes of the
-- sweeps (dedup ids, topic dedup ids, given-up push deliveries, deleted queues' messages,
-- payloads, idempotency keys, folded work counts) had the same shape: `x IN (SELECT … LIMIT n)`,
-- which the planner may turn inside out.
--
-- Each now selects its rows into an array first (an InitPlan, run once) and deletes or updates
-- by `= ANY (array)`: an index probe per element, or a TID scan. Messages and FIFO groups are
-- deleted and reopened by key, not ctid: a row a send or a receive updated after the statement's
-- snapshot is locked in its new version, which a TID scan under that snapshot would not find
-- (043 keyed the reopening of groups for that reason); by key, the update is followed. The
-- sweeper also plans each statement afresh with index scans only (plan_cache_mode and the
-- planner settings of its connection, src/mq/sweeper.c), so the joins the other sweep
-- functions make are planned for the tables as they are; mq_measure_depths, which reads every
-- message on purpose, keeps sequential scans (its own SET).

CREATE OR REPLACE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
    expired bigint;
    kept timestamptz;
    walked bigint;
    walked_to bigint;
    upto bigint;
    closed text[];
BEGIN
    FOR q IN SELECT x.id, make_interval(secs => x.retention_seconds) AS retention,
                    coalesce(s.walked, 0) AS walked
             FROM queues x LEFT JOIN queue_sweeps s ON s.queue_id = x.id
             WHERE s.next_at IS NULL OR s.next_at <= now() LOOP
        WITH w AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                   ORDER BY id LIMIT p_window),
             w2 AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                      AND id > greatest(q.walked, (SELECT max(w.id) FROM w))
                    ORDER BY id LIMIT p_window),
             a AS (SELECT * FROM w UNION ALL SELECT * FROM w2),
             d AS (DELETE FROM messages m WHERE m.queue_id = q.id AND m.id = ANY (ARRAY(
                       SELECT x.id FROM messages x WHERE x.queue_id = q.id AND x.id = ANY (ARRAY(
                           SELECT a.id FROM a WHERE a.sent_at < now() - q.retention
                           LIMIT p_batch))
                       FOR UPDATE SKIP LOCKED))
                   RETURNING m.group_id, m.visible_at > now() AS held)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM a WHERE a.sent_at < now() - q.retention),
               (SELECT min(a.sent_at) FROM a WHERE a.sent_at >= now() - q.retention),
               (SELECT CASE WHEN count(*) = p_window THEN max(w2.id) ELSE 0 END FROM w2),
               (SELECT array_agg(DISTINCT d.group_id) FROM d
                WHERE d.held AND d.group_id IS NOT NULL)
        INTO k, expired, kept, walked_to, closed;
        IF closed IS NOT NULL THEN -- FIFO groups closed by a message it deleted: reopen
            UPDATE message_groups g
            SET in_flight_until = mq_group_held_until(q.id, g.group_id, g.leased_upto)
            WHERE g.queue_id = q.id AND g.group_id = ANY (ARRAY(
                SELECT x.group_id FROM message_groups x
                WHERE x.queue_id = q.id AND x.group_id = ANY (closed)
                FOR UPDATE SKIP LOCKED));
        END IF;
        IF expired > k THEN
            walked_to := q.walked; -- expired messages left behind: walk on once they are gone
        END IF;
        n := n + k;
        INSERT INTO queue_sweeps (queue_id, next_at, walked)
        VALUES (q.id, CASE WHEN expired > k THEN now()
                           ELSE least(kept + q.retention, now() + interval '1 minute') END,
                walked_to)
        ON CONFLICT (queue_id) DO UPDATE SET next_at = excluded.next_at, walked = excluded.walked;
    END LOOP;
    DELETE FROM dedup_entries d WHERE d.ctid = ANY (ARRAY(
        SELECT ctid FROM dedup_entries WHERE expires_at < now() LIMIT p_batch
        FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    DELETE FROM topic_dedup d WHERE d.ctid = ANY (ARRAY(
        SELECT ctid FROM topic_dedup WHERE expires_at < now() LIMIT p_batch
        FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    DELETE FROM push_deliveries d WHERE d.id = ANY (ARRAY(
        SELECT id FROM push_deliveries WHERE next_attempt_at = 'infinity'
          AND created_at < now() - interval '7 days' LIMIT p_batch));
    DELETE FROM queue_listeners WHERE until < now(); -- processes that died without cleaning up
    FOR q IN SELECT queue_id AS id FROM deleted_queues LOOP
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id = ANY (ARRAY(
            SELECT x.id FROM messages x WHERE x.queue_id = q.id LIMIT p_batch));
        DELETE FROM message_groups WHERE queue_id = q.id;
        DELETE FROM queue_sweeps WHERE queue_id = q.id;
        DELETE FROM dedup_entries WHERE queue_id = q.id;
    END LOOP;
    DELETE FROM deleted_queues WHERE deleted_at < now() - interval '10 minutes';
    -- payloads nothing refers to any more (bounded work per sweep): the oldest p_batch, where
    -- garbage usually is (deliveries are consumed roughly in publish order), and the next
    -- p_batch after the cursor, which walks the whole table and starts over at its end
    SELECT after INTO walked FROM sweep_cursors WHERE name = 'payloads';
    upto := (SELECT max(w.id) FROM (SELECT id FROM payloads WHERE id > coalesce(walked, 0)
                                     ORDER BY id LIMIT p_batch) w);
    DELETE FROM payloads p WHERE p.id = ANY (ARRAY(
        SELECT x.id FROM ((SELECT id, created_at FROM payloads ORDER BY id LIMIT p_batch)
                          UNION
                          SELECT id, created_at FROM payloads
                          WHERE id > coalesce(walked, 0) AND id <= upto) x
        WHERE x.created_at < now() - interval '1 minute'
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload_id = x.id)
          AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.payload_id = x.id)));
    GET DIAGNOSTICS k = ROW_COUNT;
    UPDATE sweep_cursors SET after = coalesce(upto, 0) WHERE name = 'payloads';
    RETURN n + k;
END
$$;

CREATE OR REPLACE FUNCTION work_counts_fold(p_max int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(495874320753) THEN
        RETURN 0;
    END IF;
    WITH d AS (DELETE FROM work_count_changes c WHERE c.ctid = ANY (ARRAY(
                   SELECT ctid FROM work_count_changes LIMIT p_max))
               RETURNING c.metric, c.label, c.n),
         f AS (INSERT INTO work_counts AS w (metric, label, n)
               SELECT metric, label, sum(n) FROM d GROUP BY metric, label ORDER BY metric, label
               ON CONFLICT (metric, label) DO UPDATE SET n = w.n + excluded.n
               RETURNING 1)
    SELECT count(*) FROM f INTO folded;
    RETURN folded;
END
$$;

CREATE OR REPLACE FUNCTION rydes_sweep(p_batch int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    deleted bigint;
BEGIN
    WITH gone AS (
        DELETE FROM idempotency_keys k WHERE k.ctid = ANY (ARRAY(
            SELECT ctid FROM idempotency_keys
            WHERE created_at < now() - interval '48 hours' ORDER BY created_at LIMIT p_batch))
        RETURNING 1)
    SELECT count(*) FROM gone INTO deleted;
    PERFORM work_counts_fold(p_batch * 100);
    PERFORM rydes_fail_dead_lettered_tasks(p_batch);
    PERFORM rydes_fail_orphaned_tasks(p_batch);
    RETURN deleted;
END
$$;

-- The depth measurement reads every message on purpose: a sequential scan, not the index walk
-- the sweeper's connection would otherwise plan (random heap reads once the table outgrows
-- memory).
ALTER FUNCTION mq_measure_depths() SET enable_seqscan = on;
ALTER FUNCTION mq_measure_depths() SET enable_bitmapscan = on;
