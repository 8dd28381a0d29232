-- 053: FIFO group lookups by key use the key's index whatever the statistics say.
--
-- Receives, deletes, visibility changes, holds and sends look a group up by (queue_id,
-- group_id), the primary key. message_groups is emptied and refilled all day (a receive deletes
-- a group it finds empty), and autovacuum analyses it while it is empty; with those statistics
-- the generic plans of the pool's connections (and PL/pgSQL's cached ones) chose
-- message_groups_ready, (queue_id, in_flight_until), for such a lookup and filtered by
-- group_id: with 50,000 groups in a queue every FIFO receive and delete read all of them, until
-- the next analyse invalidated the plans. The ready index is made partial on a condition the
-- column always meets (it is NOT NULL): only statements that compare in_flight_until, whose
-- comparison implies it (the ready cursor of mq_receive_fifo, mq_purge), can use it, and a
-- lookup by key has the primary key alone.

DROP INDEX message_groups_ready;
CREATE INDEX message_groups_ready ON message_groups (queue_id, in_flight_until)
    WHERE in_flight_until IS NOT NULL;
