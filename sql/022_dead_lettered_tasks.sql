-- 022: a prebooking whose message went to the dead-letter queue fails its task, however the
-- last attempt ended.
--
-- The prebooking-processing consumer fails a task (given_up) when the last receive its queue
-- allows fails in the process. When that attempt ended with the process or its database
-- connection (a crash, a kill, a failover), nothing failed the task: at the lease's end the
-- next receive moved the message to prebooking-processing-dlq and the task stayed "processing"
-- for ever. The Wild Rydes sweep now looks at the messages that reached that dead-letter queue
-- since it last looked (a cursor in sweep_cursors, so a deep dead-letter queue costs nothing
-- per sweep) and fails their tasks that are still open, as given_up would have. Message ids are
-- taken at insert, not at commit, so a move that took id N can commit after one that took N+1:
-- the cursor stops before the first message moved in the last five minutes (its visible_at,
-- which the move sets to now()), and those after it are looked at again by later sweeps
-- (failing a task twice changes nothing) until every move below them has ended.

INSERT INTO sweep_cursors (name) VALUES ('prebooking-dead-letters') ON CONFLICT DO NOTHING;

-- The task id of a prebooking-processing message's body, or NULL when it has none.
CREATE FUNCTION rydes_task_id_of(p_body text) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN (p_body::jsonb ->> 'task_id')::uuid;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- Fails the open tasks of up to p_batch messages that reached prebooking-processing-dlq since
-- the last call. Returns how many tasks it failed.
CREATE FUNCTION rydes_fail_dead_lettered_tasks(p_batch int) RETURNS int
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

-- The Wild Rydes part of the sweep, as in 020, and the tasks above.
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
    PERFORM rydes_fail_dead_lettered_tasks(p_batch);
    RETURN deleted;
END
$$;
