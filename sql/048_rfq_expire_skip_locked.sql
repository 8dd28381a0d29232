-- 048: the deadline timer skips the RFQs it cannot lock at once. rfq_expire (008) updated every
-- running RFQ past its eta in one statement and so waited for any row lock among them: one
-- stalled quote transaction (up to the statement or idle-in-transaction timeout) held the
-- completion of every other due RFQ, and the aggregator thread behind it. A row skipped is one
-- a quote transaction is deciding; that transaction, the next tick (200 ms) or a reader
-- (rfq_settle's SKIP LOCKED) completes it.
CREATE OR REPLACE FUNCTION rfq_expire() RETURNS int
LANGUAGE sql AS $$
    WITH due AS (
        SELECT id FROM rfqs WHERE status = 'running' AND eta <= now()
        FOR NO KEY UPDATE SKIP LOCKED),
    done AS (
        UPDATE rfqs r SET status = 'done', completion_reason = 'timeout', completed_at = r.eta
        FROM due WHERE r.id = due.id AND r.status = 'running'
        RETURNING 1)
    SELECT count(*)::int FROM done
$$;
