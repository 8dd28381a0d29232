-- 025: the dead-letter sweep of 022 no longer passes a move that has not committed yet, and
-- reads only the dead-letter queue's index range.
--
-- 022 moved its cursor to just before the first message moved in the last five minutes. But it
-- sees committed messages only: a move that took id N and had not committed while one that took
-- N+1 had was behind the new cursor once it committed, and its task stayed "processing" for
-- ever (several consumers moving expired messages at once, after a crash, is when it happens).
-- The cursor now moves only up to the last message moved more than five minutes ago that comes
-- before every recent one: an id below such a message that is not visible yet belongs to a
-- transaction older than five minutes, which receives (short statements) never are.
--
-- The scan joined queues by name, so the planner could not read messages_pkey (queue_id, id) as
-- a range: every sweep of every process read the whole dead-letter queue after the cursor and
-- sorted it. The queue's id is looked up first; the scan reads p_batch entries of the index.

CREATE OR REPLACE FUNCTION rydes_fail_dead_lettered_tasks(p_batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    dlq int;
    walked bigint;
    upto bigint;
    n int;
BEGIN
    SELECT id INTO dlq FROM queues WHERE name = 'prebooking-processing-dlq';
    IF dlq IS NULL THEN
        RETURN 0;
    END IF;
    SELECT after INTO walked FROM sweep_cursors WHERE name = 'prebooking-dead-letters'
    FOR UPDATE; -- every process's sweep runs this: one at a time
    WITH dl AS (SELECT m.id, coalesce(p.body, m.body) AS body, m.receive_count,
                       m.visible_at > now() - interval '5 minutes' AS recent
                FROM messages m
                LEFT JOIN payloads p ON p.id = m.payload_id
                WHERE m.queue_id = dlq AND m.id > walked ORDER BY m.id LIMIT p_batch),
         failed AS (UPDATE tasks t SET status = 'failed', error_title = 'Processing failed',
                           error_detail = format('the task could not be processed after %s '
                                                 'attempts: the last one ended without an '
                                                 'answer (its process or database connection '
                                                 'was lost)', dl.receive_count),
                           result_id = NULL, updated_at = now()
                    FROM dl WHERE t.id = rydes_task_id_of(dl.body)
                      AND t.status IN ('pending', 'processing')
                    RETURNING 1)
    SELECT (SELECT max(id) FROM dl
            WHERE id < coalesce((SELECT min(id) FROM dl WHERE recent), 9223372036854775807)),
           (SELECT count(*) FROM failed)
    INTO upto, n;
    IF upto IS NOT NULL AND upto > walked THEN
        UPDATE sweep_cursors SET after = upto WHERE name = 'prebooking-dead-letters';
    END IF;
    RETURN n;
END
$$;
