-- 024: an RFQ completes when the unicorns it asked have answered, not any names.
--
-- rfq_add_quote (008, 023) completed an RFQ once it held as many quotes as the request had
-- deliveries, under whatever unicorn names the quotes declared: a service client quoting
-- under names of its own could complete an RFQ before the subscribed unicorns answered. An
-- RFQ now records the unicorns it asks at submission: NAME of every queue rfq-unicorn-NAME
-- (DESIGN.md's topology) subscribed to rfq-requests. A quote under another name is refused
-- ('not_asked': the aggregator acks and counts it) and never completes the RFQ. When the
-- topic also has other subscriptions (an operator's URL or queue), whose answers may come
-- under any name, recipients is NULL and every name counts, as before.

ALTER TABLE rfqs ADD COLUMN recipients text[];
COMMENT ON COLUMN rfqs.recipients IS
    'the unicorns asked (their queues rfq-unicorn-NAME); NULL: quotes under any name count';

-- The unicorns an RFQ submitted now asks (see above); NULL when any subscription of topic
-- rfq-requests is not a queue rfq-unicorn-NAME, or the topic has none.
CREATE FUNCTION rfq_recipients() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_and(q.name IS NOT NULL AND q.name LIKE 'rfq-unicorn-%')
                THEN array_agg(substr(q.name, 13) ORDER BY q.name) END
    FROM subscriptions s
    JOIN topics t ON t.id = s.topic_id
    LEFT JOIN queues q ON q.id = s.queue_id AND s.url IS NULL
    WHERE t.name = 'rfq-requests'
$$;

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
    IF r.recipients IS NOT NULL AND NOT p_unicorn = ANY (r.recipients) THEN
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
