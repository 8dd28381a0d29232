-- 045: a task is failed from its dead-letter queue only by its own event.
--
-- The dead-letter sweep (022/025/035) failed the open task named by any message that reached
-- prebooking-processing-dlq: anyone allowed to send to that queue (a service token) could send
-- {"task_id": X} into it and fail a pending task that was going to succeed. A task now records
-- the message id of the event published for it (every delivery of a publish carries its id, and
-- a move to a dead-letter queue keeps it; a send cannot choose one), and the sweep fails it only
-- for a dead letter with that id. Tasks from before this migration have none (NULL) and are
-- failed by any, as then.

ALTER TABLE tasks ADD COLUMN event_id uuid;

COMMENT ON COLUMN tasks.event_id IS
    'the message id of the event published for the task: only a dead letter with this id fails '
    'it (NULL: a task from before migration 045, or one born failed)';

-- As in 035, but a dead letter must carry the task's event id.
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
          AND (t.event_id IS NULL OR t.event_id = dl.message_id)
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
        ON CONFLICT (id) DO NOTHING
        RETURNING 1)
    SELECT (SELECT count(*) FROM failed) + (SELECT count(*) FROM made) INTO n;
    RETURN n;
END
$$;
