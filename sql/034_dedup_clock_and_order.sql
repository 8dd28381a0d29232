-- 034: FIFO deduplication judged by the clock, its ids taken in one order.
--
-- The 5-minute window was judged against now(), the start of the transaction: a send that
-- waited on a group lock across the end of the window (or a publish late in a long PublishBatch)
-- took an expired id for a live one and was answered "duplicate" with nothing enqueued, and the
-- id it renewed expired early by as long as it had waited. The window is now judged, and an id
-- renewed, by clock_timestamp().
--
-- Two batches sending the same dedup ids in opposite orders to different groups deadlocked:
-- each inserted its first id and waited for the other's uncommitted insert of its second. A
-- batch with more than one dedup id now takes a transaction-level advisory lock per id, in one
-- order for all senders (hashtext of the id, with the queue id in the upper half of the
-- single 64-bit key), after its group locks and before its first insert; a batch whose ids were
-- all locked first by another waits for that one to commit and then finds them as duplicates.
-- (Single-key advisory locks do not conflict with the two-key ones of topic batches, prebooking
-- customers and dead-letter changes. The single keys of the migrator and the sweeper are below
-- 2^40, so only a queue below id 256 could meet them, the topology's only queue 1953460335, each
-- with one particular hash: a wait, never an error.)

CREATE OR REPLACE FUNCTION mq_send_fifo(p_queue int, p_entries json)
RETURNS TABLE (ord int, message_id uuid, sequence bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    seq bigint;
    kept uuid;
    kept_seq bigint;
BEGIN
    -- Every group of the batch is locked up front, in one order for all senders: two batches
    -- naming the same groups in different orders would otherwise deadlock.
    PERFORM mq_touch_group(p_queue, x.group_id)
    FROM (SELECT DISTINCT group_id FROM json_to_recordset(p_entries) AS y(group_id text)
          ORDER BY group_id) x;
    -- So are its dedup ids, when there are several (see above).
    IF json_array_length(p_entries) > 1 THEN
        IF (SELECT count(DISTINCT dedup_id)
            FROM json_to_recordset(p_entries) AS y(dedup_id text)) > 1 THEN
            PERFORM pg_advisory_xact_lock((p_queue::bigint << 32) | (x.h::bigint & 4294967295))
            FROM (SELECT DISTINCT hashtext(dedup_id) AS h
                  FROM json_to_recordset(p_entries) AS y(dedup_id text) ORDER BY 1) x;
        END IF;
    END IF;
    FOR e IN
        SELECT x.*, row_number() OVER () :: int AS n
        FROM json_to_recordset(p_entries) AS x(message_id uuid, group_id text, dedup_id text,
                                                body text, body_json boolean, attributes jsonb,
                                                delay int)
    LOOP
        -- The group's row lock first, the sequence number second: concurrent sends to one
        -- group then get their numbers in commit order, which is the group's delivery order.
        PERFORM mq_touch_group(p_queue, e.group_id);
        seq := nextval('message_ids');
        INSERT INTO dedup_entries AS d (queue_id, dedup_id, message_id, sequence, expires_at)
        VALUES (p_queue, e.dedup_id, e.message_id, seq, clock_timestamp() + interval '5 minutes')
        ON CONFLICT (queue_id, dedup_id) DO UPDATE
            SET message_id = EXCLUDED.message_id, sequence = EXCLUDED.sequence,
                expires_at = EXCLUDED.expires_at
            WHERE d.expires_at <= clock_timestamp()
        RETURNING d.message_id, d.sequence INTO kept, kept_seq;
        IF NOT FOUND THEN
            SELECT d.message_id, d.sequence INTO kept, kept_seq FROM dedup_entries d
            WHERE d.queue_id = p_queue AND d.dedup_id = e.dedup_id;
            ord := e.n; message_id := kept; sequence := kept_seq; duplicate := true;
            RETURN NEXT;
            CONTINUE;
        END IF;
        INSERT INTO messages (queue_id, id, visible_at, message_id, group_id, body_json, body,
                              attributes)
        VALUES (p_queue, seq, now() + make_interval(secs => e.delay), e.message_id, e.group_id,
                e.body_json, e.body, e.attributes);
        ord := e.n; message_id := e.message_id; sequence := seq; duplicate := false;
        RETURN NEXT;
    END LOOP;
    PERFORM mq_notify(p_queue);
END
$$;

-- The same window for the deduplication of FIFO topics (a topic batch is one transaction).
CREATE OR REPLACE FUNCTION mq_publish_fifo(p_topic int, p_dedup text, p_message_id uuid,
                                           p_group text, p_targets int[], p_raws boolean[],
                                           p_raw bigint, p_env bigint, p_body_json boolean,
                                           p_attributes jsonb, OUT kept uuid,
                                           OUT deliveries int, OUT duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    kept := p_message_id;
    deliveries := 0;
    duplicate := false;
    IF p_topic IS NOT NULL AND p_dedup IS NOT NULL THEN
        INSERT INTO topic_dedup AS d (topic_id, dedup_id, message_id, expires_at)
        VALUES (p_topic, p_dedup, p_message_id, clock_timestamp() + interval '5 minutes')
        ON CONFLICT (topic_id, dedup_id) DO UPDATE
            SET message_id = EXCLUDED.message_id, expires_at = EXCLUDED.expires_at
            WHERE d.expires_at <= clock_timestamp();
        IF NOT FOUND THEN
            SELECT d.message_id INTO kept FROM topic_dedup d
            WHERE d.topic_id = p_topic AND d.dedup_id = p_dedup;
            duplicate := true;
            RETURN;
        END IF;
    END IF;
    FOR t IN
        SELECT x.q, x.raw, q.fifo, q.delay_seconds
        FROM unnest(p_targets, p_raws) AS x(q, raw) JOIN queues q ON q.id = x.q
        ORDER BY x.q
    LOOP
        IF t.fifo THEN
            PERFORM mq_touch_group(t.q, p_group);
        END IF;
        INSERT INTO messages (queue_id, visible_at, message_id, group_id, body_json, body,
                              attributes, payload_id)
        VALUES (t.q, now() + make_interval(secs => t.delay_seconds), p_message_id,
                CASE WHEN t.fifo THEN p_group END,
                CASE WHEN t.raw THEN p_body_json ELSE true END, '',
                CASE WHEN t.raw THEN p_attributes END,
                CASE WHEN t.raw THEN p_raw ELSE p_env END);
        PERFORM mq_notify(t.q);
        deliveries := deliveries + 1;
    END LOOP;
END
$$;
