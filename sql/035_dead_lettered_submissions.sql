-- 035: a submission dead-lettered after its process died on the last attempt gets its task;
-- the dead-letter sweep's cursor no longer waits for whoever reads the dead-letter queue.
--
-- A message sent straight into prebooking-submission makes its task (id = the message id) when
-- the prebooking-submission worker takes it in; when the last attempt the queue allows failed in
-- the process, given_up made the task, failed. When that attempt ended with its process or its
-- database connection, the next receive moved the message to prebooking-submission-dlq and no
-- task was ever made: polling GET /tasks/{id} answered 404 for ever. The dead-letter sweep of
-- 022/025 now walks that queue too, with a cursor of its own, and makes the missing task,
-- failed. The walk of a dead-letter queue after a cursor is one function both walks use.
--
-- 025 kept the cursor before every message whose visible_at was in the last five minutes (a move
-- sets it to now()), as a move with a lower id may still be open. But a receive from the
-- dead-letter queue moves visible_at too: someone reading it held the cursor back as long as
-- they kept receiving, and past the first p_batch messages after the cursor newer moves were
-- not looked at. The cursor now passes only ids taken more than five minutes ago, known from
-- the sequence itself: each cursor keeps a fence (the last message id handed out, and when it
-- was read); once a fence is five minutes old every transaction that took an id up to it has
-- ended (moves are short statements), so it becomes the cursor's limit (safe_upto) and a new
-- fence is read. message_ids has CACHE 1: no backend takes an id below the last one handed out.

ALTER TABLE sweep_cursors ADD COLUMN fence bigint, ADD COLUMN fence_at timestamptz,
    ADD COLUMN safe_upto bigint NOT NULL DEFAULT 0;

INSERT INTO sweep_cursors (name) VALUES ('prebooking-submission-dead-letters')
ON CONFLICT DO NOTHING;

-- Up to p_batch messages of dead-letter queue p_queue after cursor p_cursor, in id order,
-- moving the cursor up to the last of them whose id is known to be final (see above: the ids
-- after it are returned again by later calls). Takes the cursor's row lock: every process's
-- sweep calls this, one at a time. Nothing when the queue is missing.
CREATE FUNCTION rydes_dead_letters_after(p_queue text, p_cursor text, p_batch int)
RETURNS TABLE (message_id uuid, body text, receive_count int, sent_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    dlq int;
    c sweep_cursors;
    upto bigint;
    r record;
BEGIN
    SELECT id INTO dlq FROM queues WHERE name = p_queue;
    IF dlq IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO c FROM sweep_cursors WHERE name = p_cursor FOR UPDATE;
    -- clock_timestamp(): the sweep's transaction may have begun long before (other parts of
    -- the sweep, the wait for this row); the fence is read now, and aged from now
    IF c.fence_at IS NULL OR c.fence_at <= clock_timestamp() - interval '5 minutes' THEN
        c.safe_upto := coalesce(c.fence, c.safe_upto);
        UPDATE sweep_cursors SET safe_upto = c.safe_upto, fence_at = clock_timestamp(),
                                 fence = (SELECT last_value FROM message_ids)
        WHERE name = p_cursor;
    END IF;
    FOR r IN SELECT m.id, m.message_id, coalesce(p.body, m.body) AS body, m.receive_count,
                    m.sent_at
             FROM messages m
             LEFT JOIN payloads p ON p.id = m.payload_id
             WHERE m.queue_id = dlq AND m.id > c.after ORDER BY m.id LIMIT p_batch
    LOOP
        IF r.id <= c.safe_upto THEN
            upto := r.id;
        END IF;
        message_id := r.message_id; body := r.body; receive_count := r.receive_count;
        sent_at := r.sent_at;
        RETURN NEXT;
    END LOOP;
    IF upto IS NOT NULL THEN
        UPDATE sweep_cursors SET after = upto WHERE name = p_cursor;
    END IF;
END
$$;

-- Fails the open tasks of up to p_batch messages that reached prebooking-processing-dlq since
-- the last call, and makes the failed task of each message that reached
-- prebooking-submission-dlq without one. Returns how many tasks it failed or made.
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
