-- 036: a task whose message can no longer exist fails instead of staying open for ever.
--
-- A prebooking task is finished by the message that carries it through prebooking-processing
-- (or, dead-lettered, by the sweep of 022/025). When that message vanished otherwise (the queue
-- purged or deleted and made again, the message expired by the queue's retention, its publish
-- outbox row failed for good), nothing ever finished the task and GET /tasks/{id} said
-- "pending" with Retry-After: 1 for ever. The sweep now fails the open tasks older than
-- prebooking-processing's retention plus an hour (a message of the task is published after the
-- task is stored, within seconds; one older than the retention is gone or due to go), oldest
-- first, through the partial index tasks_open, skipping a task a worker holds.

CREATE FUNCTION rydes_fail_orphaned_tasks(p_batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    keep int;
    n int;
BEGIN
    SELECT retention_seconds INTO keep FROM queues WHERE name = 'prebooking-processing';
    IF keep IS NULL THEN
        RETURN 0; -- no queue, no rule to judge by: tasks wait for the topology to come back
    END IF;
    WITH o AS (SELECT id FROM tasks
               WHERE status IN ('pending', 'processing')
                 AND submitted_at < now() - make_interval(secs => keep) - interval '1 hour'
               ORDER BY submitted_at LIMIT p_batch FOR UPDATE SKIP LOCKED),
         f AS (UPDATE tasks t SET status = 'failed', error_title = 'Processing failed',
                      error_detail = format('no message of the task was left to process it %s '
                                            'after it was submitted (the queue was purged, the '
                                            'message expired or was never delivered)',
                                            date_trunc('second', now() - t.submitted_at)),
                      result_id = NULL, updated_at = now()
               FROM o WHERE t.id = o.id
               RETURNING 1)
    SELECT count(*) FROM f INTO n;
    RETURN n;
END
$$;

-- The Wild Rydes part of the sweep, as in 022, and the tasks above.
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
    PERFORM rydes_fail_orphaned_tasks(p_batch);
    RETURN deleted;
END
$$;
