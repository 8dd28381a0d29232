-- 009: fare collection, an orchestrated saga. Every fare is a saga instance: the steps of
-- src/rydes/saga.c run one after another (register, pre-authorize, charge, credit the account,
-- complete, publish the outcome); a business failure compensates what was done in reverse.
-- The executor (src/workers/saga_services.c) claims due fares with SKIP LOCKED under a lease, so
-- a crashed process's sagas resume elsewhere from the step they stood at.
CREATE TABLE fares (
    -- a ride's fare is "ride-" + the ride id; POST /fares may not use that prefix, so a posted
    -- fare can never take a ride's place
    id              text          PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    ride_id         uuid          UNIQUE,  -- NULL for fares posted through POST /fares
    customer        text          NOT NULL,
    amount          numeric(12,2) NOT NULL CHECK (amount >= 0),
    card_last4      text          CHECK (card_last4 ~ '^[0-9]{4}$'), -- never more of the card
    status          text          NOT NULL DEFAULT 'pending'
                                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    phase           text          NOT NULL DEFAULT 'forward'
                                  CHECK (phase IN ('forward', 'compensating', 'finished')),
    step            int           NOT NULL DEFAULT 0, -- index of the step to run next
    outcome         text          CHECK (outcome IN ('succeeded', 'failed')),
    needs_operator  boolean       NOT NULL DEFAULT false,
    preauth_code    text,
    charge_id       text,
    credit_id       text,
    next_attempt_at timestamptz   NOT NULL DEFAULT now(), -- due time, or the lease of a run
    lease           uuid,         -- the run holding the fare; its writes check it
    created_at      timestamptz   NOT NULL DEFAULT now(),
    updated_at      timestamptz   NOT NULL DEFAULT now(),
    request_hash    text          -- POST /fares: the request, for idempotent resubmission
);

CREATE INDEX fares_due ON fares (next_attempt_at) WHERE status IN ('pending', 'running');

-- The step log: one row per step of every saga.
CREATE TABLE saga_steps (
    fare_id     text        NOT NULL REFERENCES fares (id) ON DELETE CASCADE,
    position    int         NOT NULL,
    name        text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'done', 'failed',
                                              'compensated', 'skipped')),
    attempts    int         NOT NULL DEFAULT 0,
    compensation_attempts int NOT NULL DEFAULT 0,
    detail      text,
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (fare_id, position)
);

-- The payment simulator's ledger: every operation once per idempotency key, so a retried call
-- returns what the first one did. It balances when every charge has a credit or a refund and
-- every pre-authorization was charged or voided.
CREATE TABLE payment_ledger (
    id              bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text          NOT NULL UNIQUE,
    fare_id         text          NOT NULL,
    kind            text          NOT NULL
                                  CHECK (kind IN ('preauth', 'void', 'charge', 'refund', 'credit',
                                                  'declined', 'transient')),
    customer        text          NOT NULL,
    amount          numeric(12,2) NOT NULL,
    reference       text          NOT NULL, -- the code or id handed back
    created_at      timestamptz   NOT NULL DEFAULT now()
);

CREATE INDEX payment_ledger_fare ON payment_ledger (fare_id);

COMMENT ON TABLE fares IS 'fare-collection sagas: one per ride (or POST /fares)';
COMMENT ON TABLE saga_steps IS 'the step log of every saga: attempts, outcome, detail, timings';
COMMENT ON TABLE payment_ledger IS 'the built-in payment simulator: every operation, once';

-- Money per fare as the simulator saw it: taken (charged) minus given back (refunded) and what
-- reached the customer's account. A fare balances when charged = credited + refunded and no
-- pre-authorization is left open.
CREATE VIEW fare_ledger AS
SELECT f.id AS fare_id, f.status, f.outcome,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0) AS charged,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0) AS refunded,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'credit'), 0) AS credited,
       count(*) FILTER (WHERE l.kind = 'preauth') AS preauths,
       count(*) FILTER (WHERE l.kind = 'void') AS voids,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0)
         = coalesce(sum(l.amount) FILTER (WHERE l.kind = 'credit'), 0)
           + coalesce(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0) AS balanced
FROM fares f LEFT JOIN payment_ledger l ON l.fare_id = f.id
GROUP BY f.id, f.status, f.outcome;

-- Sagas an operator must look at: a compensation that failed past its retry budget.
CREATE VIEW stuck_sagas AS
SELECT f.id, f.customer, f.amount, s.name AS step, s.status, s.compensation_attempts, s.detail,
       f.updated_at
FROM fares f JOIN saga_steps s ON s.fare_id = f.id AND s.status = 'failed'
     AND s.compensation_attempts > 0
WHERE f.needs_operator
ORDER BY f.updated_at;

-- Starts the saga of a fare (the customer-accounting worker for a ride, or POST /fares): the fare
-- and one pending step row per name of p_steps. False when the fare exists already (a
-- redelivered ride, a resubmitted POST /fares): nothing changes then.
CREATE FUNCTION saga_start(p_id text, p_ride uuid, p_customer text, p_amount numeric,
                           p_last4 text, p_hash text, p_steps text[]) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fares (id, ride_id, customer, amount, card_last4, request_hash)
    VALUES (p_id, p_ride, p_customer, p_amount, p_last4, p_hash)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO saga_steps (fare_id, position, name)
    SELECT p_id, s.i - 1, s.name FROM unnest(p_steps) WITH ORDINALITY AS s(name, i);
    RETURN true;
END
$$;
