-- 013: the store-and-publish statements of Wild Rydes write a publish outbox; the fan-out into
-- the subscribed queues follows right after commit, in batches.
--
-- POST /rides, POST /prebookings and POST /rfqs store their resource and publish its event in
-- one statement (MQ_PUBLISH_JSON_SQL in include/rydes/topics.h). Until now that statement
-- also wrote the payload and one message per subscribed queue: seven rows and their index
-- entries for a ride, on the request path. Now it writes the resource and one outbox row that
-- holds the event (body, attributes, message id) and the queues its filters matched, decided
-- at publish time as before. The event commits with the resource or not at all. The fan-out
-- thread of every process (src/mq/fanout.c) moves outbox rows into payloads and messages, many
-- per statement, woken by the publishing process at once and looking every 100 ms for the
-- rows of other (or crashed) processes. An outbox row is deleted in the same transaction that
-- delivers it: every event is delivered exactly once, to the queues it matched.
--
-- A batch that fails is delivered again one event at a time, each in a subtransaction: an
-- event whose delivery fails alone (a trigger an operator added refuses it, say) keeps its row
-- with failed_at and error set, and never blocks the events behind it. Setting failed_at back
-- to NULL retries it.

CREATE TABLE publish_outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  uuid        NOT NULL,
    body        text        NOT NULL,
    body_json   boolean     NOT NULL,
    attributes  jsonb,
    queues      int[]       NOT NULL, -- the queues the subscriptions' filters matched
    created_at  timestamptz NOT NULL DEFAULT now(),
    failed_at   timestamptz,          -- its delivery failed alone: an operator's case
    error       text
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0);

-- Records a publish whose fan-out follows after commit. p_notify is ignored (the fan-out
-- notifies the queues it delivers to); it stays so that the callers' parameters keep their
-- types. Returns the deliveries to come.
CREATE FUNCTION mq_publish_later(p_message_id uuid, p_body text, p_body_json boolean,
                                 p_attributes jsonb, p_queues int[], p_notify int[])
RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(p_queues), 0) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO publish_outbox (message_id, body, body_json, attributes, queues)
    VALUES (p_message_id, p_body, p_body_json, p_attributes, p_queues);
    RETURN cardinality(p_queues);
END
$$;

-- Delivers the outbox rows p_ids, which the caller has locked: one payload per event (its body
-- stored once), one message per queue it matched (a queue deleted since gets none), a NOTIFY
-- per queue that received messages. Returns the messages written.
CREATE FUNCTION mq_fanout_rows(p_ids bigint[]) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    WITH o AS (DELETE FROM publish_outbox x WHERE x.id = ANY (p_ids) RETURNING x.*),
    k AS (SELECT o.*, nextval('payloads_id_seq') AS pid FROM o),
    p AS (INSERT INTO payloads (id, body) OVERRIDING SYSTEM VALUE SELECT pid, body FROM k),
    ins AS (
        INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                              payload_id)
        SELECT t.q, now() + make_interval(secs => q.delay_seconds), k.message_id, k.body_json,
               '', k.attributes, k.pid
        FROM k CROSS JOIN LATERAL unnest(k.queues) WITH ORDINALITY AS t(q, ord)
        JOIN queues q ON q.id = t.q
        ORDER BY k.id, t.ord
        RETURNING queue_id),
    notified AS (SELECT pg_notify('rydes_mq', d.queue_id::text)
                 FROM (SELECT DISTINCT queue_id FROM ins) d)
    -- (a CTE without data changes runs only when referenced: hence notified's count)
    SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM notified) INTO n;
    RETURN n;
END
$$;

-- Delivers up to p_max outbox rows, oldest first, skipping rows another transaction is
-- delivering and rows that failed. Returns the events delivered and the messages written.
CREATE FUNCTION mq_fanout(p_max int, OUT events int, OUT deliveries int)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    ids := ARRAY(SELECT id FROM publish_outbox WHERE failed_at IS NULL ORDER BY id LIMIT p_max
                 FOR UPDATE SKIP LOCKED);
    events := cardinality(ids);
    deliveries := CASE WHEN events > 0 THEN mq_fanout_rows(ids) ELSE 0 END;
END
$$;

-- mq_fanout one event at a time, each in a subtransaction: an event whose delivery fails is
-- marked failed (failed_at, error) and the others are delivered. For after a failed mq_fanout.
CREATE FUNCTION mq_fanout_careful(p_max int, OUT events int, OUT deliveries int)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    events := 0;
    deliveries := 0;
    FOR r IN SELECT id FROM publish_outbox WHERE failed_at IS NULL ORDER BY id LIMIT p_max
             FOR UPDATE SKIP LOCKED LOOP
        BEGIN
            deliveries := deliveries + mq_fanout_rows(ARRAY[r.id]);
            events := events + 1;
        EXCEPTION WHEN OTHERS THEN
            UPDATE publish_outbox SET failed_at = now(), error = SQLERRM WHERE id = r.id;
        END;
    END LOOP;
END
$$;
