-- 024: an RFQ completes when the unicorns it asked have answered, not any names.
--
-- rfq_add_quote (008, 023) completed an RFQ once it held as many quotes as the request had
-- deliveries, under whatever unicorn names the quotes declared: a service client quoting
-- under names of its own could complete an RFQ before the subscribed unicorns answered. An
-- RFQ now records the unicorns it asks at submission (src/rydes/rfqs.c, from the same
-- subscriptions its request is published to): NAME of every queue rfq-unicorn-NAME (DESIGN.md's
-- topology) subscribed to rfq-requests. A quote under another name is refused ('not_asked':
-- the aggregator acks and counts it) and never completes the RFQ. When the topic also has other
-- subscriptions (an operator's URL or queue), whose answers may come under any name,
-- recipients is NULL and every name counts, as before.

ALTER TABLE rfqs ADD COLUMN recipients text[];
COMMENT ON COLUMN rfqs.recipients IS
    'the unicorns asked (their queues rfq-unicorn-NAME); NULL: quotes under any name count';

CREATE OR REPLACE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric,
                                         p_goodies jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n int;
BEGIN
    SELECT status, eta, expected_responses, recipients INTO r FROM rfqs WHERE id = p_rfq
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    IF r.status <> 'running' OR r.eta <= clock_timestamp() THEN
        RETURN 'finished';
    END IF;
    IF r.recipients IS NOT NULL AND NOT coalesce(p_unicorn = ANY (r.recipients), false) THEN
        RETURN 'not_asked';
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
