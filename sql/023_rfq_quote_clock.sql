-- 023: a quote is judged against the eta when it is recorded, not when its transaction began.
--
-- rfq_add_quote (008) compared the eta with now(), the start of the aggregator's transaction.
-- A quote whose transaction began just before the eta but reached the RFQ's row lock after it
-- (another quote's transaction held the lock) was still added, and could complete the RFQ as
-- 'all_answered' with a completed_at before the eta, after readers had been told 'timeout'
-- (found by an independent review). The check and completed_at now use clock_timestamp(),
-- read after the row lock. (The moment between the check and the commit remains.)

CREATE OR REPLACE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric,
                                         p_goodies jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n int;
BEGIN
    SELECT status, eta, expected_responses INTO r FROM rfqs WHERE id = p_rfq FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    IF r.status <> 'running' OR r.eta <= clock_timestamp() THEN
        RETURN 'finished';
    END IF;
    INSERT INTO rfq_quotes AS q (rfq_id, unicorn, price, goodies)
    VALUES (p_rfq, p_unicorn, p_price, coalesce(p_goodies, '[]'))
    ON CONFLICT (rfq_id, unicorn) DO UPDATE
        SET price = EXCLUDED.price, goodies = EXCLUDED.goodies, received_at = now();
    SELECT count(*) INTO n FROM rfq_quotes WHERE rfq_id = p_rfq;
    IF n >= r.expected_responses THEN
        UPDATE rfqs SET status = 'done', completion_reason = 'all_answered',
                        completed_at = least(clock_timestamp(), r.eta)
        WHERE id = p_rfq;
        RETURN 'completed';
    END IF;
    RETURN 'stored';
END
$$;
