-- 021: a push worker writes an attempt's outcome only while the delivery is still its own.
--
-- A claim leases a delivery for 120 s (next_attempt_at) and counts the attempt. A worker whose
-- write-back came later than that (a stalled database connection, one slow statement after
-- another) still retried or gave up the delivery by its id alone: over another worker's
-- claim of the same delivery, so that a third could POST it at the same time, or it was
-- dead-lettered while being delivered. The writes now also name the attempt they are about
-- (attempts = the claim's count): after a newer claim they change nothing. A success still
-- deletes the delivery whoever holds it: the message has been delivered.

-- mq_push_exhausted of 004 for the claim that counted attempt p_attempts: NULL (and nothing
-- changed) when the delivery is no longer that claim's.
CREATE FUNCTION mq_push_exhausted(p_id bigint, p_attempts int, p_error text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM push_deliveries WHERE id = p_id AND attempts = p_attempts FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN mq_push_exhausted(p_id, p_error);
END
$$;
