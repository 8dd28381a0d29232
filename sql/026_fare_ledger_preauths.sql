-- 026: fare_ledger's balanced also needs every pre-authorization closed, as 009's comment on
-- the view says; it compared money only, so a failed fare whose void never happened (a hold
-- still on the customer's card) read balanced. A pre-authorization is closed by its capture
-- (the charge) or its void.

CREATE OR REPLACE VIEW fare_ledger AS
SELECT f.id AS fare_id, f.status, f.outcome,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0) AS charged,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0) AS refunded,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'credit'), 0) AS credited,
       count(*) FILTER (WHERE l.kind = 'preauth') AS preauths,
       count(*) FILTER (WHERE l.kind = 'void') AS voids,
       coalesce(sum(l.amount) FILTER (WHERE l.kind = 'charge'), 0)
         = coalesce(sum(l.amount) FILTER (WHERE l.kind = 'credit'), 0)
           + coalesce(sum(l.amount) FILTER (WHERE l.kind = 'refund'), 0)
       AND count(*) FILTER (WHERE l.kind = 'preauth')
         <= count(*) FILTER (WHERE l.kind IN ('void', 'charge')) AS balanced
FROM fares f LEFT JOIN payment_ledger l ON l.fare_id = f.id
GROUP BY f.id, f.status, f.outcome;
