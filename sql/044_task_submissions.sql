-- 044: a prebooking task keeps its submission.
--
-- The prebooking-processing worker made the prebooking from the message it received: anyone
-- allowed to send to its queue (a service token) could name a pending task with another
-- customer, place or time, and the task would book that; or send a broken event naming a task,
-- whose fifth failed attempt failed that task. A task now stores the event published for it
-- (from, to, customer, when), and processing reads only the task id from the message: a
-- message someone else wrote processes the task as it was submitted, or names no task. Tasks
-- from before this migration have none (NULL) and are processed from their messages, as then.

ALTER TABLE tasks ADD COLUMN submission jsonb;

COMMENT ON COLUMN tasks.submission IS
    'the prebooking as submitted (the event published for it): what processing books '
    '(NULL: a task from before migration 044, or one born failed)';
