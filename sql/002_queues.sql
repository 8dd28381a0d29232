-- 002: the queue engine.
--
-- queues holds one row per queue with its attributes. messages holds every message of every
-- queue, keyed (queue_id, id): id comes from one sequence, so it orders messages by arrival and
-- doubles as the FIFO sequence number. The primary key is the only index on messages for
-- standard queues, and no indexed column ever changes: a receive rewrites only the lease columns
-- (visible_at, receive_count, receipt, first_received_at), so with free space on the page
-- (fillfactor) every claim is a HOT update that adds no index entry. Claims walk the primary
-- key from the oldest message of the queue and skip rows that are leased, delayed or locked.
--
-- FIFO queues add message_groups (one row per group with messages; the row lock is the group's
-- claim lock and in_flight_until says whether the group has a message in flight) and
-- dedup_entries (5-minute deduplication window).
CREATE TABLE queues (
    id                   int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text        NOT NULL UNIQUE
                                     CHECK (name ~ '^[A-Za-z0-9_-]{1,80}$'
                                            OR name ~ '^[A-Za-z0-9_-]{1,75}\.fifo$'),
    fifo                 boolean     NOT NULL DEFAULT false,
    visibility_timeout   int         NOT NULL DEFAULT 30 CHECK (visibility_timeout BETWEEN 0 AND 43200),
    delay_seconds        int         NOT NULL DEFAULT 0 CHECK (delay_seconds BETWEEN 0 AND 900),
    retention_seconds    int         NOT NULL DEFAULT 345600
                                     CHECK (retention_seconds BETWEEN 60 AND 1209600),
    max_message_bytes    int         NOT NULL DEFAULT 262144
                                     CHECK (max_message_bytes BETWEEN 1024 AND 1048576),
    receive_wait_seconds int         NOT NULL DEFAULT 0 CHECK (receive_wait_seconds BETWEEN 0 AND 20),
    content_based_dedup  boolean     NOT NULL DEFAULT false,
    dead_letter_queue_id int         REFERENCES queues (id) ON DELETE SET NULL,
    max_receive_count    int         CHECK (max_receive_count BETWEEN 1 AND 1000),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (fifo = (name LIKE '%.fifo')),
    CHECK (NOT content_based_dedup OR fifo),
    -- a deleted dead-letter queue detaches (ON DELETE SET NULL) and leaves the count behind
    CHECK (dead_letter_queue_id IS NULL OR max_receive_count IS NOT NULL)
);

-- CACHE 1: ids are handed out in arrival order across sessions, which receivers rely on when
-- they start their scan a little before the last id they claimed (src/mq/messages.c).
CREATE SEQUENCE message_ids AS bigint CACHE 1;

CREATE TABLE messages (
    queue_id          int         NOT NULL,
    id                bigint      NOT NULL DEFAULT nextval('message_ids'),
    visible_at        timestamptz NOT NULL,
    receive_count     int         NOT NULL DEFAULT 0,
    receipt           bigint,
    first_received_at timestamptz,
    sent_at           timestamptz NOT NULL DEFAULT now(),
    message_id        uuid        NOT NULL,
    group_id          text,
    source_queue_id   int,        -- set when the message was moved to a dead-letter queue
    body_json         boolean     NOT NULL DEFAULT false,
    body              text        NOT NULL,
    attributes        jsonb,
    payload_id        bigint,     -- a topic delivery: the body is payloads.body (stored once)
    PRIMARY KEY (queue_id, id)
) WITH (fillfactor = 70,
        autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
        autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.05);

-- Bodies published to a topic, stored once however many queues receive them: the delivered
-- messages carry payload_id and an empty body. The sweeper removes payloads no message uses.
CREATE TABLE payloads (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX messages_payload ON messages (payload_id) WHERE payload_id IS NOT NULL;

-- FIFO only: the messages of one group in order.
CREATE INDEX messages_group ON messages (queue_id, group_id, id) WHERE group_id IS NOT NULL;

CREATE TABLE message_groups (
    queue_id        int         NOT NULL,
    group_id        text        NOT NULL,
    in_flight_until timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (queue_id, group_id)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500);

CREATE INDEX message_groups_ready ON message_groups (queue_id, in_flight_until);

-- Queues deleted in the last minutes: the sweeper deletes messages that processes still caching
-- such a queue (for up to a second) sent to it after it was deleted.
CREATE TABLE deleted_queues (
    queue_id   int         PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);

-- Processes with long polls waiting on a queue. A send NOTIFYs only when the queue has a
-- listener here, so queues nobody waits on never pay for NOTIFY (which serialises commits).
CREATE TABLE queue_listeners (
    queue_id int         NOT NULL,
    listener text        NOT NULL, -- host:pid:start of the process
    until    timestamptz NOT NULL,
    PRIMARY KEY (queue_id, listener)
);

CREATE TABLE dedup_entries (
    queue_id   int         NOT NULL,
    dedup_id   text        NOT NULL,
    message_id uuid        NOT NULL,
    sequence   bigint      NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue_id, dedup_id)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

COMMENT ON TABLE queues IS 'one row per queue, with its attributes';
COMMENT ON TABLE messages IS 'every message of every queue; lease columns are rewritten by receives';
COMMENT ON TABLE message_groups IS 'FIFO message groups that have messages; the row lock is the claim lock';
COMMENT ON TABLE dedup_entries IS 'FIFO deduplication ids, kept for 5 minutes';

-- Approximate depths of deep queues, refreshed by the sweeper (see src/mq/sweeper.c); shallow
-- queues are counted exactly on demand instead.
CREATE TABLE queue_depths (
    queue_id       int         PRIMARY KEY,
    available      bigint      NOT NULL,
    in_flight      bigint      NOT NULL,
    delayed        bigint      NOT NULL,
    oldest_sent_at timestamptz,
    measured_at    timestamptz NOT NULL
);

-- Wakes the long polls of a queue, if any process has some waiting.
CREATE FUNCTION mq_notify(p_queue int) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('rydes_mq', p_queue::text)
    WHERE EXISTS (SELECT 1 FROM queue_listeners WHERE queue_id = p_queue AND until > now())
$$;

-- A message's delivery state, by the rules every claim uses.
-- STABLE (it reads now()), which also lets the planner inline it into every query.
CREATE FUNCTION mq_state(visible_at timestamptz, receive_count int) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN visible_at <= now() THEN 'available'
                WHEN receive_count > 0 THEN 'in_flight'
                ELSE 'delayed' END
$$;

-- Moves the exhausted messages among the first p_max visible ones of a standard queue to its
-- dead-letter queue. Returns how many moved.
CREATE FUNCTION mq_move_exhausted(p_queue int, p_dlq int, p_max_rc int, p_max int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    WITH c AS (
        SELECT m.id FROM messages m
        WHERE m.queue_id = p_queue AND m.visible_at <= now()
        ORDER BY m.id LIMIT p_max FOR UPDATE SKIP LOCKED
    ), moved AS (
        DELETE FROM messages m USING c
        WHERE m.queue_id = p_queue AND m.id = c.id AND m.receive_count >= p_max_rc
        RETURNING m.*
    )
    INSERT INTO messages (queue_id, visible_at, receive_count, first_received_at, sent_at,
                          message_id, group_id, source_queue_id, body_json, body, attributes,
                          payload_id)
    SELECT p_dlq, now(), receive_count, first_received_at, sent_at, message_id, group_id,
           p_queue, body_json, body, attributes, payload_id
    FROM moved;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Ensures the row of a FIFO group exists and locks it for this transaction (so a receive that
-- finds the group empty cannot delete it under a concurrent send).
CREATE FUNCTION mq_touch_group(p_queue int, p_group text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO message_groups (queue_id, group_id) VALUES (p_queue, p_group)
    ON CONFLICT (queue_id, group_id) DO UPDATE SET queue_id = EXCLUDED.queue_id
$$;

-- Recomputes whether a FIFO group still has a message in flight.
CREATE FUNCTION mq_refresh_group(p_queue int, p_group text) RETURNS void
LANGUAGE sql AS $$
    UPDATE message_groups g
    SET in_flight_until = coalesce(
        (SELECT max(m.visible_at) FROM messages m
         WHERE m.queue_id = p_queue AND m.group_id = p_group
           AND m.receive_count > 0 AND m.visible_at > now()),
        now())
    WHERE g.queue_id = p_queue AND g.group_id = p_group
$$;

-- Receives up to p_max messages of a standard queue: claims the oldest visible ones with
-- SKIP LOCKED and leases them for p_vt seconds under receipt nonce p_nonce, or deletes them
-- when p_delete. Exhausted messages go to the dead-letter queue first, never to the caller.
CREATE FUNCTION mq_receive_standard(q queues, p_max int, p_vt int, p_nonce bigint,
                                    p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    max_rc int := CASE WHEN q.dead_letter_queue_id IS NULL THEN 2147483647
                       ELSE q.max_receive_count END;
BEGIN
    IF q.dead_letter_queue_id IS NOT NULL THEN
        FOR i IN 1..10 LOOP
            EXIT WHEN mq_move_exhausted(q.id, q.dead_letter_queue_id, max_rc, p_max) = 0;
        END LOOP;
    END IF;
    IF p_delete THEN
        RETURN QUERY
        WITH c AS (
            SELECT m.id FROM messages m
            WHERE m.queue_id = q.id AND m.visible_at <= now() AND m.receive_count < max_rc
            ORDER BY m.id LIMIT p_max FOR UPDATE SKIP LOCKED
        )
        DELETE FROM messages m USING c WHERE m.queue_id = q.id AND m.id = c.id
        RETURNING m.queue_id, m.id, m.visible_at, m.receive_count + 1, p_nonce,
                  coalesce(m.first_received_at, now()), m.sent_at, m.message_id, m.group_id,
                  m.source_queue_id, m.body_json, m.body, m.attributes, m.payload_id;
        RETURN;
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT m.id FROM messages m
        WHERE m.queue_id = q.id AND m.visible_at <= now() AND m.receive_count < max_rc
        ORDER BY m.id LIMIT p_max FOR UPDATE SKIP LOCKED
    )
    UPDATE messages m
    SET visible_at = now() + make_interval(secs => p_vt),
        receive_count = m.receive_count + 1,
        receipt = p_nonce,
        first_received_at = coalesce(m.first_received_at, now())
    FROM c WHERE m.queue_id = q.id AND m.id = c.id
    RETURNING m.*;
END
$$;

-- Moves the head messages of a FIFO group to the dead-letter queue while they are exhausted.
CREATE FUNCTION mq_move_exhausted_group(q queues, p_group text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    head messages;
BEGIN
    LOOP
        SELECT * INTO head FROM messages m
        WHERE m.queue_id = q.id AND m.group_id = p_group ORDER BY m.id LIMIT 1;
        EXIT WHEN NOT FOUND OR head.visible_at > now()
                  OR head.receive_count < q.max_receive_count;
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id = head.id;
        PERFORM mq_touch_group(q.dead_letter_queue_id, p_group);
        INSERT INTO messages (queue_id, visible_at, receive_count, first_received_at, sent_at,
                              message_id, group_id, source_queue_id, body_json, body,
                              attributes, payload_id)
        VALUES (q.dead_letter_queue_id, now(), head.receive_count, head.first_received_at,
                head.sent_at, head.message_id, head.group_id, q.id, head.body_json, head.body,
                head.attributes, head.payload_id);
    END LOOP;
END
$$;

-- Receives from a FIFO queue: takes groups with no message in flight (least recently served
-- first, each locked with SKIP LOCKED so no two receivers serve one group), and from each the
-- leading visible messages in order, until p_max. A group found empty is removed.
CREATE FUNCTION mq_receive_fifo(q queues, p_max int, p_vt int, p_nonce bigint, p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    got int := 0;
    n int;
BEGIN
    FOR g IN
        SELECT mg.group_id FROM message_groups mg
        WHERE mg.queue_id = q.id AND mg.in_flight_until <= now()
        ORDER BY mg.in_flight_until FOR UPDATE SKIP LOCKED
    LOOP
        IF q.dead_letter_queue_id IS NOT NULL THEN
            PERFORM mq_move_exhausted_group(q, g.group_id);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM messages m
                       WHERE m.queue_id = q.id AND m.group_id = g.group_id) THEN
            DELETE FROM message_groups mg
            WHERE mg.queue_id = q.id AND mg.group_id = g.group_id;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT * FROM mq_take_group(q, g.group_id, p_max - got, p_vt, p_nonce,
                                                 p_delete);
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
        EXIT WHEN got >= p_max;
    END LOOP;
END
$$;

-- Leases (or deletes) the leading visible messages of one locked FIFO group, in order, stopping
-- at the first one that is not visible or is exhausted.
CREATE FUNCTION mq_take_group(q queues, p_group text, p_need int, p_vt int, p_nonce bigint,
                              p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    max_rc int := CASE WHEN q.dead_letter_queue_id IS NULL THEN 2147483647
                       ELSE q.max_receive_count END;
    last_id bigint;
BEGIN
    SELECT max(s.id) INTO last_id FROM (
        SELECT m.id, bool_and(m.visible_at <= now() AND m.receive_count < max_rc)
                     OVER (ORDER BY m.id) AS ok
        FROM messages m WHERE m.queue_id = q.id AND m.group_id = p_group
        ORDER BY m.id LIMIT p_need
    ) s WHERE s.ok;
    IF last_id IS NULL THEN
        RETURN;
    END IF;
    -- In flight until the lease ends; with delete or visibility 0 the group stays open but
    -- still moves to the back of the serve order, so one busy group cannot starve the others.
    UPDATE message_groups mg
    SET in_flight_until = now() + make_interval(secs => CASE WHEN p_delete THEN 0 ELSE p_vt END)
    WHERE mg.queue_id = q.id AND mg.group_id = p_group;
    IF p_delete THEN
        RETURN QUERY
        DELETE FROM messages m
        WHERE m.queue_id = q.id AND m.group_id = p_group AND m.id <= last_id
        RETURNING m.queue_id, m.id, m.visible_at, m.receive_count + 1, p_nonce,
                  coalesce(m.first_received_at, now()), m.sent_at, m.message_id, m.group_id,
                  m.source_queue_id, m.body_json, m.body, m.attributes, m.payload_id;
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE messages m
    SET visible_at = now() + make_interval(secs => p_vt),
        receive_count = m.receive_count + 1,
        receipt = p_nonce,
        first_received_at = coalesce(m.first_received_at, now())
    WHERE m.queue_id = q.id AND m.group_id = p_group AND m.id <= last_id
    RETURNING m.*;
END
$$;

-- The one entry point of every receive.
CREATE FUNCTION mq_receive(p_queue int, p_max int, p_vt int, p_nonce bigint, p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    q queues;
BEGIN
    SELECT * INTO q FROM queues WHERE id = p_queue;
    IF NOT FOUND THEN
        RETURN;
    ELSIF q.fifo THEN
        RETURN QUERY SELECT * FROM mq_receive_fifo(q, p_max, p_vt, p_nonce, p_delete);
    ELSE
        RETURN QUERY SELECT * FROM mq_receive_standard(q, p_max, p_vt, p_nonce, p_delete);
    END IF;
END
$$;

-- Sends a batch to a FIFO queue. Each entry is {message_id, group_id, dedup_id, body,
-- body_json, attributes, delay}; returns per entry (in order) the message id and sequence
-- number that stand, and whether it was a duplicate within the 5-minute window.
CREATE FUNCTION mq_send_fifo(p_queue int, p_entries json)
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
        VALUES (p_queue, e.dedup_id, e.message_id, seq, now() + interval '5 minutes')
        ON CONFLICT (queue_id, dedup_id) DO UPDATE
            SET message_id = EXCLUDED.message_id, sequence = EXCLUDED.sequence,
                expires_at = EXCLUDED.expires_at
            WHERE d.expires_at <= now()
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

-- Operator views: what every queue holds, what is in flight, what is dead-lettered.
CREATE VIEW queue_stats AS
SELECT q.name,
       q.fifo,
       count(m.id) FILTER (WHERE m.visible_at <= now())                         AS available,
       count(m.id) FILTER (WHERE m.visible_at > now() AND m.receive_count > 0)  AS in_flight,
       count(m.id) FILTER (WHERE m.visible_at > now() AND m.receive_count = 0)  AS delayed,
       coalesce(extract(epoch FROM now() - min(m.sent_at)), 0)::bigint          AS oldest_age_seconds,
       dlq.name                                                                 AS dead_letter_queue,
       q.max_receive_count
FROM queues q
LEFT JOIN messages m ON m.queue_id = q.id
LEFT JOIN queues dlq ON dlq.id = q.dead_letter_queue_id
GROUP BY q.id, dlq.name
ORDER BY q.name;

CREATE VIEW in_flight AS
SELECT q.name AS queue, m.message_id, m.group_id, m.receive_count, m.first_received_at,
       m.visible_at AS lease_until, m.visible_at - now() AS lease_left, m.sent_at
FROM messages m JOIN queues q ON q.id = m.queue_id
WHERE m.visible_at > now() AND m.receive_count > 0;

CREATE VIEW dead_letters AS
SELECT q.name AS dead_letter_queue, src.name AS source_queue, m.message_id, m.group_id,
       m.receive_count, m.sent_at, m.first_received_at, src.max_receive_count,
       left(CASE WHEN m.payload_id IS NULL THEN m.body
                 ELSE (SELECT p.body FROM payloads p WHERE p.id = m.payload_id) END, 200)
           AS body_start
FROM messages m
JOIN queues q ON q.id = m.queue_id
LEFT JOIN queues src ON src.id = m.source_queue_id
WHERE m.source_queue_id IS NOT NULL;

-- Timestamps as the API writes them: RFC 3339, UTC, milliseconds.
CREATE FUNCTION rfc3339(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- Deletes a message by receipt. Returns 0 when deleted, 1 when the receipt was superseded by a
-- later receive (the message is untouched), 2 when the message no longer exists.
CREATE FUNCTION mq_delete(p_queue int, p_id bigint, p_nonce bigint) RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
    RETURN mq_by_receipt(p_queue, p_id, p_nonce, NULL);
END
$$;

-- Makes a received message visible again p_secs from now (0 releases it). Same results as
-- mq_delete.
CREATE FUNCTION mq_change_visibility(p_queue int, p_id bigint, p_nonce bigint, p_secs int)
RETURNS int
LANGUAGE plpgsql AS $$
BEGIN
    RETURN mq_by_receipt(p_queue, p_id, p_nonce, p_secs);
END
$$;

-- Deletes (p_secs NULL) or re-times a message by receipt: 0 done, 1 superseded, 2 gone. A FIFO
-- message's group row is locked first, in the order every receive locks (group, then
-- messages), so a delete never deadlocks with a receive of the same group; the group's
-- in-flight state is then recomputed by a later statement, which sees the change.
CREATE FUNCTION mq_by_receipt(p_queue int, p_id bigint, p_nonce bigint, p_secs int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    g text;
BEGIN
    SELECT m.group_id INTO g FROM messages m WHERE m.queue_id = p_queue AND m.id = p_id;
    IF NOT FOUND THEN
        RETURN 2;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM 1 FROM message_groups mg
        WHERE mg.queue_id = p_queue AND mg.group_id = g FOR UPDATE;
    END IF;
    IF p_secs IS NULL THEN
        DELETE FROM messages m
        WHERE m.queue_id = p_queue AND m.id = p_id AND m.receipt = p_nonce;
    ELSE
        UPDATE messages m SET visible_at = now() + make_interval(secs => p_secs)
        WHERE m.queue_id = p_queue AND m.id = p_id AND m.receipt = p_nonce;
    END IF;
    IF NOT FOUND THEN
        PERFORM 1 FROM messages m WHERE m.queue_id = p_queue AND m.id = p_id;
        RETURN CASE WHEN FOUND THEN 1 ELSE 2 END;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM mq_refresh_group(p_queue, g);
    END IF;
    RETURN 0;
END
$$;

-- Moves up to p_max messages of dead-letter queue p_dlq to p_to, or, when p_to is NULL, back to
-- the queue each came from (messages without a known source stay). They arrive as new messages:
-- visible now, receive count 0, original sent_at kept. Returns how many moved.
CREATE FUNCTION mq_redrive(p_dlq int, p_to int, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    total bigint := 0;
    n int;
    r record;
    -- only what is there now: messages moved back into p_dlq itself get new ids above this
    last_id bigint := (SELECT max(id) FROM messages WHERE queue_id = p_dlq);
BEGIN
    LOOP
        n := 0;
        FOR r IN
            WITH pick AS MATERIALIZED ( -- materialized: the LIMIT must hold, however planned
                SELECT x.id FROM messages x
                JOIN queues t ON t.id = coalesce(p_to, x.source_queue_id)
                WHERE x.queue_id = p_dlq AND x.id <= last_id
                  AND x.visible_at <= now() -- a message a consumer holds stays where it is
                ORDER BY x.id LIMIT least(1000, p_max - total) FOR UPDATE OF x SKIP LOCKED)
            DELETE FROM messages m USING pick
            WHERE m.queue_id = p_dlq AND m.id = pick.id
            RETURNING m.*
        LOOP
            IF r.group_id IS NOT NULL THEN
                PERFORM mq_touch_group(coalesce(p_to, r.source_queue_id), r.group_id);
            END IF;
            INSERT INTO messages (queue_id, visible_at, sent_at, message_id, group_id, body_json,
                                  body, attributes, payload_id)
            VALUES (coalesce(p_to, r.source_queue_id), now(), r.sent_at, r.message_id,
                    r.group_id, r.body_json, r.body, r.attributes, r.payload_id);
            n := n + 1;
        END LOOP;
        total := total + n;
        EXIT WHEN n = 0 OR total >= p_max;
    END LOOP;
    IF total > 0 THEN
        PERFORM mq_notify(q.id) FROM queues q
        WHERE q.id = p_to OR (p_to IS NULL AND q.dead_letter_queue_id = p_dlq);
    END IF;
    RETURN total;
END
$$;

-- The sweeper's work, in small batches so it never holds many locks or runs long: messages past
-- their queue's retention (looked for among the oldest p_window of each queue, so a sweep stays
-- cheap at any depth), expired deduplication ids, and the depth measurement of every queue.
-- Returns how many messages and dedup ids it deleted.
CREATE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
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
    DELETE FROM queue_listeners WHERE until < now(); -- processes that died without cleaning up
    FOR q IN SELECT queue_id AS id FROM deleted_queues LOOP
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM messages x WHERE x.queue_id = q.id LIMIT p_batch);
        DELETE FROM message_groups WHERE queue_id = q.id;
        DELETE FROM dedup_entries WHERE queue_id = q.id;
    END LOOP;
    DELETE FROM deleted_queues WHERE deleted_at < now() - interval '10 minutes';
    -- payloads no message refers to any more, among the oldest p_window (bounded work per
    -- sweep; payloads are consumed roughly in the order they were published)
    DELETE FROM payloads p WHERE p.id IN (
        SELECT x.id FROM (SELECT id, created_at FROM payloads ORDER BY id LIMIT p_window) x
        WHERE x.created_at < now() - interval '1 minute'
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.payload_id = x.id)
        LIMIT p_batch);
    RETURN n + k;
END
$$;

CREATE FUNCTION mq_measure_depths() RETURNS void
LANGUAGE sql AS $$
    INSERT INTO queue_depths AS d (queue_id, available, in_flight, delayed, oldest_sent_at,
                                   measured_at)
    SELECT q.id,
           count(m.id) FILTER (WHERE m.visible_at <= now()),
           count(m.id) FILTER (WHERE m.visible_at > now() AND m.receive_count > 0),
           count(m.id) FILTER (WHERE m.visible_at > now() AND m.receive_count = 0),
           min(m.sent_at), now()
    FROM queues q LEFT JOIN messages m ON m.queue_id = q.id
    GROUP BY q.id
    ON CONFLICT (queue_id) DO UPDATE
        SET available = EXCLUDED.available, in_flight = EXCLUDED.in_flight,
            delayed = EXCLUDED.delayed, oldest_sent_at = EXCLUDED.oldest_sent_at,
            measured_at = EXCLUDED.measured_at
$$;

-- Purges a queue. The FIFO group rows are locked first: a send to a group waits for the purge
-- and then recreates the group row with its message, so no message is left without its group.
CREATE FUNCTION mq_purge(p_queue int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM message_groups WHERE queue_id = p_queue ORDER BY group_id FOR UPDATE;
    DELETE FROM messages WHERE queue_id = p_queue;
    DELETE FROM message_groups WHERE queue_id = p_queue;
END
$$;
