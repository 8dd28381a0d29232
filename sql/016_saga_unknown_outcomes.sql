-- 016: a saga step given up after transient errors may still have happened.
--
-- A gateway call that timed out (or got a 5xx) may have gone through: the answer was lost, not
-- the operation. Before, such a step was marked failed and the compensation walk started at the
-- step before it, so a charge that went through without an answer stayed charged. Now the step
-- records that its outcome is unknown, and its own compensation runs too: by the original call's
-- idempotency key, as no reference came back (src/rydes/saga.c). A call that never reached the
-- gateway (connection refused) leaves the outcome known: nothing happened.
ALTER TABLE saga_steps ADD COLUMN outcome_unknown boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN saga_steps.outcome_unknown IS
    'an attempt ended without an answer from the gateway after the call reached it';

-- The simulator's answer to an undo by key whose original never happened: a 'cancelled' row
-- under the original's key, so that the original, arriving late, is refused.
ALTER TABLE payment_ledger DROP CONSTRAINT payment_ledger_kind_check,
    ADD CONSTRAINT payment_ledger_kind_check
        CHECK (kind IN ('preauth', 'void', 'charge', 'refund', 'credit', 'declined', 'transient',
                        'cancelled'));

-- Also the sagas whose step without a compensation (the credit) ended with an unknown outcome:
-- nothing can undo it, so an operator decides.
CREATE OR REPLACE VIEW stuck_sagas AS
SELECT f.id, f.customer, f.amount, s.name AS step, s.status, s.compensation_attempts, s.detail,
       f.updated_at
FROM fares f JOIN saga_steps s ON s.fare_id = f.id AND s.status = 'failed'
     AND (s.compensation_attempts > 0 OR s.outcome_unknown)
WHERE f.needs_operator
ORDER BY f.updated_at;
