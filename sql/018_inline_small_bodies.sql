-- 018: a small published body is written into each delivered message; only a large one is
-- stored once in payloads.
--
-- A publish (the fan-out of the outbox, and mq_publish_payload) stored every body once in
-- payloads and gave each delivered message a payload_id and an empty body. For the small bodies
-- of Wild Rydes' events (~250 bytes) that costs more than it saves: a payload row, its primary
-- key entry and a messages_payload entry per delivery, and later the sweep of the payload.
-- pgbench, 10 events of 250 bytes to 5 queues a statement, 4 clients: 2673/3429 statements/s
-- through payloads, 3951/5352 with the bodies inline. Bodies over 1024 bytes
-- still go to payloads once: five copies of them would cost more in heap and WAL than the rows
-- saved, and rows stay well below the TOAST threshold.
--
-- Readers need nothing new: a message with payload_id NULL carries its body (MQ_BODY_SQL), as
-- every message sent to a queue directly always did.

CREATE OR REPLACE FUNCTION mq_fanout_rows(p_ids bigint[]) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    WITH o AS (DELETE FROM publish_outbox x WHERE x.id = ANY (p_ids) RETURNING x.*),
    k AS (SELECT o.*, CASE WHEN octet_length(o.body) > 1024 THEN nextval('payloads_id_seq') END
                      AS pid
          FROM o),
    p AS (INSERT INTO payloads (id, body) OVERRIDING SYSTEM VALUE
          SELECT pid, body FROM k WHERE pid IS NOT NULL),
    ins AS (
        INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                              payload_id)
        SELECT t.q, now() + make_interval(secs => q.delay_seconds), k.message_id, k.body_json,
               CASE WHEN k.pid IS NULL THEN k.body ELSE '' END, k.attributes, k.pid
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

CREATE OR REPLACE FUNCTION mq_publish_payload(p_message_id uuid, p_body text, p_body_json boolean,
                                              p_attributes jsonb, p_queues int[], p_notify int[])
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    pid bigint;
    n int;
BEGIN
    IF cardinality(p_queues) = 0 THEN
        RETURN 0;
    END IF;
    IF octet_length(p_body) > 1024 THEN
        INSERT INTO payloads (body) VALUES (p_body) RETURNING id INTO pid;
    END IF;
    INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                          payload_id)
    SELECT t.q, now() + make_interval(secs => q.delay_seconds), p_message_id, p_body_json,
           CASE WHEN pid IS NULL THEN p_body ELSE '' END, p_attributes, pid
    FROM unnest(p_queues) AS t(q) JOIN queues q ON q.id = t.q;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_notify('rydes_mq', x::text) FROM unnest(p_notify) AS x;
    RETURN n;
END
$$;

-- Unrelated, and only a comment: since the saga change of the same session (src/rydes/saga.c),
-- a step is marked before its call, by the statement that records the step before it or by the
-- claim that resumes the fare there, and cleared by an answer.
COMMENT ON COLUMN saga_steps.outcome_unknown IS
    'a call of this step may have reached the gateway without an answer: set before every call, '
    'cleared by an answer';
