-- 028: the sweep's cleanups find what is due through an index. Expired deduplication ids
-- (dedup_entries, topic_dedup) and week-old failed push deliveries were found by scanning
-- their whole table on every sweep (once a second) whenever fewer than a batch were due: a
-- FIFO queue taking 1000 sends a second keeps 300,000 ids in its 5-minute window.
CREATE INDEX dedup_entries_expiry ON dedup_entries (expires_at);
CREATE INDEX topic_dedup_expiry ON topic_dedup (expires_at);
CREATE INDEX push_deliveries_failed ON push_deliveries (created_at)
    WHERE next_attempt_at = 'infinity';
