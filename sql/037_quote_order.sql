-- 037: a unicorn's later quote replaces its earlier one by when it was sent, not processed.
--
-- rfq_add_quote replaced a unicorn's stored quote with whichever came through the aggregator
-- last. A quote whose processing failed once (a database blip) is retried a second or more
-- later, and several aggregators take messages in no fixed order: a provider that quoted 50 and
-- then revised to 40 could end with 50. A quote now carries the time its message was sent
-- (rfq-responses' sent_at: a unicorn's send, or POST /rfqs/{id}/quotes), and one sent before
-- the stored quote changes nothing ('superseded'). The four-argument form stays for binaries
-- that do not pass the time: their quotes replace only quotes of unknown time.

ALTER TABLE rfq_quotes ADD COLUMN sent_at timestamptz;
COMMENT ON COLUMN rfq_quotes.sent_at IS
    'when the quote''s message was sent (NULL: not known); a later-sent quote replaces it';

CREATE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric, p_goodies jsonb,
                              p_sent_at timestamptz)
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
    INSERT INTO rfq_quotes AS q (rfq_id, unicorn, price, goodies, sent_at)
    VALUES (p_rfq, p_unicorn, p_price, coalesce(p_goodies, '[]'), p_sent_at)
    ON CONFLICT (rfq_id, unicorn) DO UPDATE
        SET price = EXCLUDED.price, goodies = EXCLUDED.goodies, received_at = now(),
            sent_at = coalesce(EXCLUDED.sent_at, q.sent_at)
        -- a quote of unknown time (an older binary's) does not replace one of known time
        WHERE q.sent_at IS NULL OR q.sent_at <= EXCLUDED.sent_at;
    IF NOT FOUND THEN
        RETURN 'superseded';
    END IF;
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

CREATE OR REPLACE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric,
                                         p_goodies jsonb)
RETURNS text
LANGUAGE sql AS $$
    SELECT rfq_add_quote(p_rfq, p_unicorn, p_price, p_goodies, NULL::timestamptz)
$$;
