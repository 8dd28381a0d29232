-- 023: what a review of migrations 019–022 found.
--
-- 1. The dead-lettered-task sweep (022) advanced its cursor to the highest id it saw. Ids come
--    from a sequence at insert, not at commit: a dead-letter move that took id N and committed
--    after a move that took N+1 was never looked at, and its task stayed "processing". The
--    cursor now stops before the first message moved in the last five minutes (its visible_at,
--    which the move sets to now()); the messages after it are looked at again by later sweeps
--    (failing a task twice changes nothing), until every move that could still be in flight
--    below them has committed or rolled back (a move is one statement, bounded by its timeout).
-- 2. TRUNCATE bypasses the row triggers of 020: the counts of a truncated table are now taken
--    back by a statement trigger (exact: TRUNCATE holds the table exclusively, so no change to
--    it is pending).
-- 3. The 020 trigger functions run as the table's owner (SECURITY DEFINER, search_path pinned):
--    a data role (RYDES_GRANT_ROLE) writing tasks, rfqs, fares or saga_steps needs no grant on
--    work_count_changes, so its writes keep working between a migration and the next grant.
-- 4. mq_transient (019) re-raised class 58 (I/O errors): an error tied to one event's data would
--    stop the whole outbox behind it. Such an event is set aside again; classes 40, 53, 57 and
--    55P03 (conditions of the whole server, or a lock) still fail the try.
-- 5. The retention sweep's walk (019) moved its cursor past expired messages it had no room to
--    delete (more than p_batch expired in the oldest window): it now stays until they are gone.

CREATE OR REPLACE FUNCTION rydes_fail_dead_lettered_tasks(p_batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    walked bigint;
    upto bigint;
    n int;
BEGIN
    SELECT after INTO walked FROM sweep_cursors WHERE name = 'prebooking-dead-letters'
    FOR UPDATE; -- every process's sweep runs this: one at a time
    WITH dl AS (SELECT m.id, coalesce(p.body, m.body) AS body, m.receive_count,
                       m.visible_at > now() - interval '5 minutes' AS recent
                FROM messages m
                JOIN queues q ON q.id = m.queue_id AND q.name = 'prebooking-processing-dlq'
                LEFT JOIN payloads p ON p.id = m.payload_id
                WHERE m.id > walked ORDER BY m.id LIMIT p_batch),
         failed AS (UPDATE tasks t SET status = 'failed', error_title = 'Processing failed',
                           error_detail = format('the task could not be processed after %s '
                                                 'attempts: the last one ended without an '
                                                 'answer (its process or database connection '
                                                 'was lost)', dl.receive_count),
                           result_id = NULL, updated_at = now()
                    FROM dl WHERE t.id = rydes_task_id_of(dl.body)
                      AND t.status IN ('pending', 'processing')
                    RETURNING 1)
    SELECT coalesce((SELECT min(id) - 1 FROM dl WHERE recent), (SELECT max(id) FROM dl)),
           (SELECT count(*) FROM failed)
    INTO upto, n;
    IF upto IS NOT NULL AND upto > walked THEN
        UPDATE sweep_cursors SET after = upto WHERE name = 'prebooking-dead-letters';
    END IF;
    RETURN n;
END
$$;

-- After a TRUNCATE of a counted table: its metrics' counts go back to zero.
CREATE FUNCTION work_counts_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
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

ALTER FUNCTION work_count_tasks() SECURITY DEFINER SET search_path FROM CURRENT;
ALTER FUNCTION work_count_rfqs() SECURITY DEFINER SET search_path FROM CURRENT;
ALTER FUNCTION work_count_fares() SECURITY DEFINER SET search_path FROM CURRENT;
ALTER FUNCTION work_count_saga_steps() SECURITY DEFINER SET search_path FROM CURRENT;
ALTER FUNCTION work_counts_truncated() SECURITY DEFINER SET search_path FROM CURRENT;

CREATE OR REPLACE FUNCTION mq_transient(p_sqlstate text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT left(p_sqlstate, 2) IN ('40', '53', '57') OR p_sqlstate = '55P03'
$$;

-- mq_sweep as in 019, but the walk stays while expired messages remain behind it.
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
             d AS (DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
                       SELECT a.id FROM a WHERE a.sent_at < now() - q.retention LIMIT p_batch)
                   RETURNING 1)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM a WHERE a.sent_at < now() - q.retention),
               (SELECT min(a.sent_at) FROM a WHERE a.sent_at >= now() - q.retention),
               (SELECT CASE WHEN count(*) = p_window THEN max(w2.id) ELSE 0 END FROM w2)
        INTO k, expired, kept, walked_to;
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
    DELETE FROM payloads p WHERE p.id IN (
        SELECT x.id FROM ((SELECT id, created_at FROM payloads ORDER BY id LIMIT p_batch)
                          UNION
                          SELECT id, created_at FROM payloads
                          WHERE id > coalesce(walked, 0) AND id <= upto) x
        WHERE x.created_at < now() - interval '1 minute'
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload_id = x.id)
          AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.payload_id = x.id));
    UPDATE sweep_cursors SET after = coalesce(upto, 0) WHERE name = 'payloads';
    RETURN n + k;
END
$$;
