-- 054: FIFO senders lock several groups without holding one while they wait for another.
--
-- A batch send naming several groups, a publish to a FIFO topic with several FIFO queues
-- subscribed, and a batch publish locked every group's row up front, in one order for all
-- senders, each lock waiting for whoever held it. A group is held by a sender until it commits
-- and by a consumer that holds its message while it works on it (mq_hold). So a batch for
-- groups A and B that met B held locked A and waited: every receive skipped A (its claims lock
-- the group's row SKIP LOCKED) until B's holder was done, which is the head-of-line blocking
-- across groups that FIFO queues must not have.
--
-- mq_touch_groups takes the groups in the same order but never waits while it holds one: it
-- tries them all with a lock timeout of a millisecond, in a subtransaction; when one is busy
-- the subtransaction's rollback lets the others go, and the next attempt first waits for the
-- busy one, holding nothing, then tries the rest. After five attempts meet busy groups it
-- waits for each in turn, in the one order, as before (it cannot deadlock, and it ends).
-- A single group is waited for at once, as before. The caller's transaction may hold other
-- locks: those it keeps. The cost: a subtransaction (and its transaction id) per call with
-- several groups, and a batch that meets groups held in turn (workers holding them while
-- they work) may wait through five holds before it queues for them in order.

CREATE FUNCTION mq_touch_groups(p_queues int[], p_groups text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    prior text := current_setting('lock_timeout');
    qs int[];
    gs text[];
    n int;
    busy int := 0; -- the group (index in qs/gs) the last attempt found held
    held int;      -- the one this attempt waits for first
    waiting boolean := false;
    tries int := 0;
BEGIN
    IF cardinality(p_queues) IS DISTINCT FROM cardinality(p_groups) THEN
        RAISE EXCEPTION 'mq_touch_groups: % queues for % groups', cardinality(p_queues),
                        cardinality(p_groups);
    END IF;
    SELECT array_agg(x.q ORDER BY x.q, x.g), array_agg(x.g ORDER BY x.q, x.g) INTO qs, gs
    FROM (SELECT DISTINCT q, g FROM unnest(p_queues, p_groups) AS u(q, g)) x;
    n := coalesce(cardinality(qs), 0);
    WHILE n > 1 AND tries < 5 LOOP
        BEGIN
            held := busy;
            IF held > 0 THEN
                waiting := true; -- holding nothing of ours, under the caller's lock_timeout
                PERFORM mq_touch_group(qs[held], gs[held]);
                waiting := false;
            END IF;
            PERFORM set_config('lock_timeout', '1ms', true);
            FOR i IN 1 .. n LOOP
                CONTINUE WHEN i = held;
                busy := i;
                PERFORM mq_touch_group(qs[i], gs[i]);
            END LOOP;
            PERFORM set_config('lock_timeout', prior, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            IF waiting THEN -- the caller's own lock_timeout ran out: the caller's error
                RAISE;
            END IF;
            tries := tries + 1; -- busy names the group; the rollback restored lock_timeout
        END;
    END LOOP;
    FOR i IN 1 .. n LOOP
        PERFORM mq_touch_group(qs[i], gs[i]);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION mq_send_fifo(p_queue int, p_entries json)
RETURNS TABLE (ord int, message_id uuid, sequence bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    seq bigint;
    kept uuid;
    kept_seq bigint;
BEGIN
    -- Every group of the batch is locked up front, none held while waiting for another.
    PERFORM mq_touch_groups(array_fill(p_queue, ARRAY[json_array_length(p_entries)]),
                            ARRAY(SELECT group_id
                                  FROM json_to_recordset(p_entries) AS y(group_id text)));
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
    -- the groups first, none held while waiting for another (054)
    PERFORM mq_touch_groups(array_agg(x.q), array_agg(p_group))
    FROM unnest(p_targets) AS x(q) JOIN queues q ON q.id = x.q WHERE q.fifo;
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
