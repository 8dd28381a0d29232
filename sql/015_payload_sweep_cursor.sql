-- 015: the payload sweep walks the whole table.
--
-- mq_sweep (004) looked only at the oldest 10,000 payloads. Once that many old payloads were
-- still in use (a dead-letter queue holding topic deliveries, a subscribed queue nobody
-- consumes), no newer payload was ever collected again and the table grew with every publish.
-- Each sweep now looks at the oldest p_batch payloads and at the next p_batch after a cursor
-- (sweep_cursors) that walks the table and starts over at its end, so every payload is looked
-- at again within (payloads / p_batch) sweeps, and a sweep probes at most 2 * p_batch of them
-- instead of 10,000. Sweeps run one at a time (the sweeper's advisory lock), so the cursor
-- needs no lock of its own. The rest of mq_sweep is as in 004.
CREATE TABLE sweep_cursors (
    name  text   PRIMARY KEY,
    after bigint NOT NULL DEFAULT 0 -- the last id looked at; 0: start over
);
INSERT INTO sweep_cursors (name) VALUES ('payloads');

CREATE OR REPLACE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
    walked bigint;
    upto bigint;
BEGIN
    FOR q IN SELECT id, retention_seconds FROM queues LOOP
        DELETE FROM messages m
        WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM (SELECT id, sent_at FROM messages
                              WHERE queue_id = q.id ORDER BY id LIMIT p_window) x
            WHERE x.sent_at < now() - make_interval(secs => q.retention_seconds)
            LIMIT p_batch);
        GET DIAGNOSTICS k = ROW_COUNT;
        n := n + k;
    END LOOP;
    DELETE FROM dedup_entries d WHERE d.ctid IN (
        SELECT ctid FROM dedup_entries WHERE expires_at < now() LIMIT p_batch);
    GET DIAGNOSTICS k = ROW_COUNT;
    DELETE FROM topic_dedup d WHERE d.ctid IN (
        SELECT ctid FROM topic_dedup WHERE expires_at < now() LIMIT p_batch);
    DELETE FROM push_deliveries d WHERE d.id IN (
        SELECT id FROM push_deliveries WHERE next_attempt_at = 'infinity'
          AND created_at < now() - interval '7 days' LIMIT p_batch);
    DELETE FROM queue_listeners WHERE until < now(); -- processes that died without cleaning up
    FOR q IN SELECT queue_id AS id FROM deleted_queues LOOP
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM messages x WHERE x.queue_id = q.id LIMIT p_batch);
        DELETE FROM message_groups WHERE queue_id = q.id;
        DELETE FROM dedup_entries WHERE queue_id = q.id;
    END LOOP;
    DELETE FROM deleted_queues WHERE deleted_at < now() - interval '10 minutes';
    -- payloads nothing refers to any more (bounded work per sweep): the oldest p_batch, where
    -- garbage usually is (deliveries are consumed roughly in publish order), and the next
    -- p_batch after the cursor, which walks the whole table and starts over at its end
    SELECT after INTO walked FROM sweep_cursors WHERE name = 'payloads';
    upto := (SELECT max(w.id) FROM (SELECT id FROM payloads WHERE id > coalesce(walked, 0)
                                     ORDER BY id LIMIT p_batch) w);
    DELETE FROM payloads p WHERE p.id IN (
        SELECT x.id FROM ((SELECT id, created_at FROM payloads ORDER BY id LIMIT p_batch)
                          UNION
                          SELECT id, created_at FROM payloads
                          WHERE id > coalesce(walked, 0) AND id <= upto) x
        WHERE x.created_at < now() - interval '1 minute'
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload_id = x.id)
          AND NOT EXISTS (SELECT 1 FROM push_deliveries d WHERE d.payload_id = x.id));
    UPDATE sweep_cursors SET after = coalesce(upto, 0) WHERE name = 'payloads';
    RETURN n + k;
END
$$;
