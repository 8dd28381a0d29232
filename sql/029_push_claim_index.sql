-- 029: the push worker claims per subscription (at most its share of the worker's slots, the
-- earliest due first), which reads this index; a subscription's deletion cascading to its
-- deliveries reads it too.
CREATE INDEX push_deliveries_subscription_due ON push_deliveries (subscription_id, next_attempt_at);

-- The next time any process may measure the queue depths (mq_measure_depths): its measurer
-- sets it, from what the measurement cost, for every process (src/mq/sweeper.c).
INSERT INTO sweep_cursors (name, after) VALUES ('depths', 0) ON CONFLICT (name) DO NOTHING;
