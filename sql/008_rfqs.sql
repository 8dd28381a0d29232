-- 008: Wild Rydes instant-ride RFQs (scatter-gather). A request is published on topic
-- rfq-requests with a correlation id and a return address; unicorns answer into queue
-- rfq-responses; the aggregator (src/workers/rfq_services.c) gathers the quotes and completes
-- the RFQ when every expected unicorn answered or at its eta, whichever comes first.
CREATE TABLE rfqs (
    id                 uuid        PRIMARY KEY,
    from_location      text        NOT NULL,
    to_location        text        NOT NULL,
    customer           text        NOT NULL,
    submitted_at       timestamptz NOT NULL,
    eta                timestamptz NOT NULL,
    expected_responses int         NOT NULL CHECK (expected_responses >= 0),
    status             text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    completed_at       timestamptz,
    completion_reason  text        CHECK (completion_reason IN ('all_answered', 'timeout')),
    CHECK ((status = 'done') = (completed_at IS NOT NULL AND completion_reason IS NOT NULL))
);

-- The deadline timer looks here: running RFQs by due time.
CREATE INDEX rfqs_due ON rfqs (eta) WHERE status = 'running';

CREATE TABLE rfq_quotes (
    rfq_id      uuid          NOT NULL REFERENCES rfqs (id) ON DELETE CASCADE,
    unicorn     text          NOT NULL,
    price       numeric(12,2) NOT NULL CHECK (price >= 0),
    goodies     jsonb         NOT NULL DEFAULT '[]',
    received_at timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (rfq_id, unicorn)
);

COMMENT ON TABLE rfqs IS 'instant-ride requests for quotes: running until all answered or eta';
COMMENT ON TABLE rfq_quotes IS 'one quote per unicorn and RFQ (a later one replaces it)';

-- Every RFQ with its progress, as an operator wants to see it.
CREATE VIEW rfq_progress AS
SELECT r.id, r.customer, r.status, r.completion_reason, r.expected_responses,
       (SELECT count(*) FROM rfq_quotes q WHERE q.rfq_id = r.id) AS response_count,
       (SELECT min(q.price) FROM rfq_quotes q WHERE q.rfq_id = r.id) AS best_price,
       r.submitted_at, r.eta, r.completed_at, r.completed_at - r.submitted_at AS took
FROM rfqs r ORDER BY r.submitted_at;

-- Completes every running RFQ past its eta (the deadline timer calls this a few times a
-- second; the partial index makes it one index probe when nothing is due). Returns how many.
CREATE FUNCTION rfq_expire() RETURNS int
LANGUAGE sql AS $$
    WITH done AS (
        UPDATE rfqs SET status = 'done', completion_reason = 'timeout', completed_at = eta
        WHERE status = 'running' AND eta <= now()
        RETURNING 1)
    SELECT count(*)::int FROM done
$$;

-- Records unicorn p_unicorn's quote for RFQ p_rfq (replacing an earlier one) and completes
-- the RFQ when every expected unicorn has answered. Returns 'stored', 'completed', or why the
-- quote was ignored: 'unknown' (no such RFQ) or 'finished' (done or past its eta).
CREATE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric, p_goodies jsonb)
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
    IF r.status <> 'running' OR r.eta <= now() THEN
        RETURN 'finished';
    END IF;
    INSERT INTO rfq_quotes AS q (rfq_id, unicorn, price, goodies)
    VALUES (p_rfq, p_unicorn, p_price, coalesce(p_goodies, '[]'))
    ON CONFLICT (rfq_id, unicorn) DO UPDATE
        SET price = EXCLUDED.price, goodies = EXCLUDED.goodies, received_at = now();
    SELECT count(*) INTO n FROM rfq_quotes WHERE rfq_id = p_rfq;
    IF n >= r.expected_responses THEN
        UPDATE rfqs SET status = 'done', completion_reason = 'all_answered', completed_at = now()
        WHERE id = p_rfq;
        RETURN 'completed';
    END IF;
    RETURN 'stored';
END
$$;
