-- 057: a submission sent straight into prebooking-submission has its task from the send on.
--
-- API.md lets apps send a prebooking straight into queue prebooking-submission; the task id is
-- then the message id. The task used to be stored only when the submission worker took the
-- message in: until then GET /tasks/{id} answered 404 (for the length of a backlog, or for
-- good when the queue was purged or the message expired before a worker came). The gateway
-- now stores the task, pending and marked awaiting_submission, right after such a send
-- commits; the worker fills it in when it takes the message in (or fails it, invalid), as do
-- the dead-letter sweep and the orphan sweep below. Only a task so marked is filled in: a
-- redriven or repeated message finds its task finished or taken in already, as before.

--
-- A task awaiting its submission has no submission and no event id, as tasks from before 044
-- and 045 have, which messages naming them were trusted for: it is left alone by everything
-- but the submission worker and the sweeps (a message sent into prebooking-processing or its
-- dead-letter queue naming it changes nothing). Only a pending one is filled in.

ALTER TABLE tasks ADD COLUMN awaiting_submission boolean NOT NULL DEFAULT false,
                  ADD COLUMN taken_in_at timestamptz;

COMMENT ON COLUMN tasks.awaiting_submission IS
    'stored when its submission was sent straight into prebooking-submission, which no worker '
    'has taken in yet (no submission, no event): the submission worker or a sweep fills it in';
COMMENT ON COLUMN tasks.taken_in_at IS
    'when the submission worker took in the submission of a task stored awaiting it (its '
    'event was published then, not at submitted_at); NULL for other tasks';

-- As in 045, and a submission dead-lettered before it was taken in fails its waiting task.
CREATE OR REPLACE FUNCTION rydes_fail_dead_lettered_tasks(p_batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    WITH failed AS (
        UPDATE tasks t SET status = 'failed', error_title = 'Processing failed',
               error_detail = format('the task could not be processed after %s attempts: the '
                                     'last one ended without an answer (its process or '
                                     'database connection was lost)', dl.receive_count),
               result_id = NULL, updated_at = now()
        FROM rydes_dead_letters_after('prebooking-processing-dlq', 'prebooking-dead-letters',
                                      p_batch) dl
        WHERE t.id = rydes_task_id_of(dl.body) AND t.status IN ('pending', 'processing')
          AND (t.event_id IS NULL OR t.event_id = dl.message_id) AND NOT t.awaiting_submission
        RETURNING 1),
    made AS (
        INSERT INTO tasks (id, kind, status, error_title, error_detail, submitted_at)
        SELECT dl.message_id, 'prebooking', 'failed', 'Processing failed',
               format('the submission could not be taken in after %s attempts: the last one '
                      'ended without an answer (its process or database connection was lost)',
                      dl.receive_count),
               dl.sent_at
        FROM rydes_dead_letters_after('prebooking-submission-dlq',
                                      'prebooking-submission-dead-letters', p_batch) dl
        ON CONFLICT (id) DO UPDATE
            SET status = 'failed', error_title = EXCLUDED.error_title,
                error_detail = EXCLUDED.error_detail, result_id = NULL, updated_at = now(),
                awaiting_submission = false
            WHERE tasks.awaiting_submission AND tasks.status = 'pending'
        RETURNING 1)
    SELECT (SELECT count(*) FROM failed) + (SELECT count(*) FROM made) INTO n;
    RETURN n;
END
$$;

-- As in 036, and a task awaiting its submission is judged by prebooking-submission's retention
-- (its message waits there, not in prebooking-processing); one taken in since, from when it was
-- (its event was published then).
CREATE OR REPLACE FUNCTION rydes_fail_orphaned_tasks(p_batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    keep int;
    keep_sent int;
    n int;
BEGIN
    SELECT retention_seconds INTO keep FROM queues WHERE name = 'prebooking-processing';
    SELECT retention_seconds INTO keep_sent FROM queues WHERE name = 'prebooking-submission';
    IF keep IS NULL THEN
        RETURN 0; -- no queue, no rule to judge by: tasks wait for the topology to come back
    END IF;
    keep_sent := coalesce(keep_sent, keep); -- its queue deleted: nothing waits there now
    WITH o AS (SELECT id FROM tasks
               WHERE status IN ('pending', 'processing')
                 AND submitted_at < now() - make_interval(secs => least(keep, keep_sent))
                                          - interval '1 hour'
                 AND CASE WHEN awaiting_submission
                          THEN submitted_at < now() - make_interval(secs => keep_sent)
                                            - interval '1 hour'
                          ELSE coalesce(taken_in_at, submitted_at)
                               < now() - make_interval(secs => keep) - interval '1 hour' END
               ORDER BY submitted_at LIMIT p_batch FOR UPDATE SKIP LOCKED),
         f AS (UPDATE tasks t SET status = 'failed', error_title = 'Processing failed',
                      error_detail = format('no message of the task was left to process it %s '
                                            'after it was submitted (the queue was purged, the '
                                            'message expired or was never delivered)',
                                            date_trunc('second', now() - t.submitted_at)),
                      result_id = NULL, updated_at = now(), awaiting_submission = false
               FROM o WHERE t.id = o.id
               RETURNING 1)
    SELECT count(*) FROM f INTO n;
    RETURN n;
END
$$;
