-- 056: primary-key lookups of tasks, rfqs and fares use their primary key whatever the
-- statistics say.
--
-- Each table has a listing index that ends in its primary key: (submitted_at, id) or
-- (created_at, id), for the dashboard's newest-first pages. Planned on a table that was
-- analysed while physically empty (a new database an operator analysed before use, or one
-- truncated and analysed), a lookup by id costed that index, with id as an index condition on
-- its second column, the same as the primary key and took it: every lookup then read the
-- whole index (every task, RFQ or fare ever kept), in the pool's generic plans until the next
-- analyse, and the saga's claim and record, the prebooking worker's lookups and the GET
-- endpoints with them. As in 053, each listing index is made partial on a condition its
-- column always meets, which the listings state and a lookup by id does not: only they can
-- use it. (Not IS NOT NULL: newer planners drop that condition on a NOT NULL column.)

-- Each new index is built before the old one is dropped: the build blocks writes to its table,
-- the drop's exclusive lock (which blocks reads too) is held only from then to the commit.

CREATE INDEX tasks_submitted_056 ON tasks (submitted_at, id) WHERE submitted_at > '-infinity';
CREATE INDEX rfqs_submitted_056 ON rfqs (submitted_at, id) WHERE submitted_at > '-infinity';
CREATE INDEX fares_created_056 ON fares (created_at, id) WHERE created_at > '-infinity';
DROP INDEX tasks_submitted;
DROP INDEX rfqs_submitted;
DROP INDEX fares_created;
ALTER INDEX tasks_submitted_056 RENAME TO tasks_submitted;
ALTER INDEX rfqs_submitted_056 RENAME TO rfqs_submitted;
ALTER INDEX fares_created_056 RENAME TO fares_created;
