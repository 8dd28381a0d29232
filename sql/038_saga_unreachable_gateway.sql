-- 038: a payment gateway that cannot be reached (connection refused, no such host: nothing was
-- sent) no longer uses up a step's attempts. A gateway restarting for ten seconds used to
-- exhaust the five attempts of a forward step (1.5-3 s of backoff) and then the six of its
-- compensation: a customer charged and neither credited nor refunded, for an operator. Such
-- attempts are counted apart and retried, backing off to 30 s, while the step has been
-- unreachable for less than RYDES_SAGA_UNREACHABLE_SECONDS (an hour by default); after that
-- they count as any failed attempt does.
ALTER TABLE saga_steps
    ADD COLUMN unreachable_attempts int NOT NULL DEFAULT 0,
    ADD COLUMN unreachable_since timestamptz;

COMMENT ON COLUMN saga_steps.unreachable_attempts IS
    'calls of this step or its compensation that never reached the gateway and were retried '
    'without counting against attempts or compensation_attempts';
COMMENT ON COLUMN saga_steps.unreachable_since IS
    'the first of the step''s current run of unreachable attempts; NULL once a call got through';

-- A saga's steps in order, with the fare they belong to (as in 010, and the unreachable
-- attempts).
CREATE OR REPLACE VIEW saga_timeline AS
SELECT f.id AS fare_id, f.ride_id, f.customer, f.amount, f.status AS fare_status, f.phase,
       f.needs_operator, s.position, s.name AS step, s.status, s.attempts,
       s.compensation_attempts, s.detail, s.started_at, s.finished_at,
       s.finished_at - s.started_at AS took, s.unreachable_attempts, s.unreachable_since
FROM fares f JOIN saga_steps s ON s.fare_id = f.id;
