-- 041: moves into a queue that is being deleted, and the retention sweep against held messages.
--
-- A queue's DELETE (one statement) removed the queue's messages as its snapshot saw them. A
-- move into that queue committing meanwhile (a redrive, a dead-letter move of an at-most-once
-- receive, a push delivery given up into its dead-letter queue) put its messages under the
-- deleted queue's id, where the sweep deleted them: messages that would have stayed where they
-- were had the delete come first were lost. Now mq_delete_queue locks the queue's row first and
-- deletes its messages in later statements, each with a snapshot taken after that lock; every
-- mover locks its target queue's row (FOR KEY SHARE, without waiting) and moves nothing into a
-- queue that is being deleted or gone. A move that held the row before the delete locked it
-- has committed by the time the delete reads the messages, so they go with the queue.
--
-- The retention sweep waited for rows other transactions held (a worker holds the message it
-- handles, 027): the whole sweep, holding the sweep lock and the rows it had deleted so far,
-- stood still behind one slow handler. It skips them now; the queue is looked at again next
-- time (expired > deleted). Expired dedup ids of queues and topics that a send or publish is
-- renewing are skipped too: the sweep holds the FIFO groups it reopened by then, and a FIFO
-- publish renews its dedup id before it takes its group, so the two deadlocked, the sweep
-- losing all it had done. What the sweep returns (how much it deleted, which makes it hurry)
-- now counts topic dedup ids and payloads too: a fast FIFO topic could outgrow it.
--
-- mq_by_receipt and mq_hold hold a FIFO group while they look for their message; when the
-- retention sweep deleted that message meanwhile, its refresh of the group skipped the held
-- group and neither refreshed it: the group stayed closed until the gone message's lease ran
-- out. They refresh it now.

CREATE FUNCTION mq_delete_queue(p_name text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    qid int;
BEGIN
    SELECT q.id INTO qid FROM queues q WHERE q.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- in the order sends and receives lock: dedup ids, then groups, then messages
    DELETE FROM dedup_entries WHERE queue_id = qid;
    DELETE FROM message_groups WHERE queue_id = qid;
    DELETE FROM messages WHERE queue_id = qid;
    DELETE FROM queue_depths WHERE queue_id = qid;
    INSERT INTO deleted_queues (queue_id) VALUES (qid)
    ON CONFLICT (queue_id) DO UPDATE SET deleted_at = now();
    UPDATE queues SET dead_letter_queue_id = NULL, max_receive_count = NULL
    WHERE dead_letter_queue_id = qid;
    DELETE FROM queues WHERE id = qid;
    RETURN 1;
END
$$;

-- As in 002, moving only while p_dlq is still p_queue's dead-letter queue and not being deleted
-- (its row locked only when there is something to move: at-most-once receives call this each
-- time).
CREATE OR REPLACE FUNCTION mq_move_exhausted(p_queue int, p_dlq int, p_max_rc int, p_max int)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    -- the head as it stands, locked rows included: an exhausted message behind rows other
    -- receives hold may wait for a later receive (claims skip it meanwhile; nothing is lost)
    IF NOT EXISTS (SELECT 1 FROM (SELECT m.receive_count FROM messages m
                                  WHERE m.queue_id = p_queue AND m.visible_at <= now()
                                  ORDER BY m.id LIMIT p_max) h
                   WHERE h.receive_count >= p_max_rc) THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM queues s JOIN queues d ON d.id = s.dead_letter_queue_id
    WHERE s.id = p_queue AND d.id = p_dlq FOR KEY SHARE OF d SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0; -- they stay, and are not delivered while the queue counts them exhausted
    END IF;
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

-- As in 004, keeping the delivery as failed when its dead-letter queue is being deleted.
CREATE OR REPLACE FUNCTION mq_push_exhausted(p_id bigint, p_error text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    d record;
    into_dlq boolean := false;
BEGIN
    SELECT pd.message_id, pd.body_json, pd.attributes, pd.payload_id,
           s.dead_letter_queue_id AS dlq
    INTO d FROM push_deliveries pd JOIN subscriptions s ON s.id = pd.subscription_id
    WHERE pd.id = p_id;
    IF FOUND AND d.dlq IS NOT NULL THEN
        PERFORM 1 FROM queues q WHERE q.id = d.dlq FOR KEY SHARE SKIP LOCKED;
        into_dlq := FOUND;
    END IF;
    IF NOT into_dlq THEN
        UPDATE push_deliveries SET next_attempt_at = 'infinity', last_error = p_error
        WHERE id = p_id;
        RETURN false;
    END IF;
    INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes,
                          payload_id)
    VALUES (d.dlq, now(), d.message_id, d.body_json, '', d.attributes, d.payload_id);
    DELETE FROM push_deliveries WHERE id = p_id;
    PERFORM mq_notify(d.dlq);
    RETURN true;
END
$$;

-- As in 033, into target queues locked against deletion.
CREATE OR REPLACE FUNCTION mq_redrive_some(p_dlq int, p_to int, p_after bigint, p_upto bigint,
                                           p_limit int, OUT moved int, OUT last_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    fifo boolean := (SELECT q.fifo FROM queues q WHERE q.id = p_dlq);
    groups text[];
    ids bigint[];
    targets int[];
    r record;
BEGIN
    moved := 0;
    SELECT max(c.id) INTO last_id
    FROM (SELECT x.id FROM messages x WHERE x.queue_id = p_dlq AND x.id > p_after
            AND x.id <= p_upto ORDER BY x.id LIMIT p_limit) c;
    IF last_id IS NULL THEN
        RETURN;
    END IF;
    -- the target queues, locked against deletion until this chunk commits; messages for a queue
    -- being deleted (or gone) stay here
    SELECT array_agg(t.id) INTO targets FROM (
        SELECT t.id FROM queues t
        WHERE t.id IN (SELECT coalesce(p_to, x.source_queue_id) FROM messages x
                       WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id)
        ORDER BY t.id FOR KEY SHARE SKIP LOCKED) t;
    IF targets IS NULL THEN
        RETURN;
    END IF;
    IF fifo THEN
        -- the dead-letter queue's groups that may move (locked)
        SELECT array_agg(f.group_id) INTO groups FROM (
            SELECT mg.group_id FROM message_groups mg
            WHERE mg.queue_id = p_dlq AND mg.in_flight_until <= now()
              AND mg.group_id IN (SELECT x.group_id FROM messages x WHERE x.queue_id = p_dlq
                                    AND x.id > p_after AND x.id <= last_id)
              AND NOT EXISTS (SELECT 1 FROM messages y
                              JOIN queues t ON t.id = coalesce(p_to, y.source_queue_id)
                              WHERE y.queue_id = p_dlq AND y.group_id = mg.group_id
                                AND y.id <= p_after)
            ORDER BY mg.group_id FOR UPDATE SKIP LOCKED) f;
        -- their target groups, locked in order without waiting: a receive on a source queue
        -- holds its group while it moves an exhausted message into this queue's
        PERFORM mq_try_group(s.t, s.g) FROM (
            SELECT DISTINCT coalesce(p_to, x.source_queue_id) AS t, x.group_id AS g
            FROM messages x
            WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
              AND x.group_id = ANY (groups)
              AND coalesce(p_to, x.source_queue_id) = ANY (targets)
            ORDER BY 1, 2) s;
        WITH target AS MATERIALIZED ( -- those mq_try_group locked (ours: FOR UPDATE sees them)
            SELECT mg.queue_id, mg.group_id FROM message_groups mg
            WHERE (mg.queue_id, mg.group_id) IN (
                SELECT coalesce(p_to, x.source_queue_id), x.group_id FROM messages x
                WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
                  AND x.group_id = ANY (groups)
                  AND coalesce(p_to, x.source_queue_id) = ANY (targets))
            ORDER BY mg.queue_id, mg.group_id FOR UPDATE SKIP LOCKED)
        SELECT array_agg(x.id ORDER BY x.id) INTO ids FROM messages x
        JOIN target t ON t.queue_id = coalesce(p_to, x.source_queue_id) AND t.group_id = x.group_id
        WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
          AND x.group_id = ANY (groups);
        PERFORM 1 FROM messages x WHERE x.queue_id = p_dlq AND x.id = ANY (ids) FOR UPDATE;
    ELSE
        WITH pick AS MATERIALIZED (
            SELECT x.id FROM messages x
            WHERE x.queue_id = p_dlq AND x.id > p_after AND x.id <= last_id
              AND coalesce(p_to, x.source_queue_id) = ANY (targets)
              AND x.visible_at <= now() -- a message a consumer holds stays where it is
            ORDER BY x.id FOR UPDATE SKIP LOCKED)
        SELECT array_agg(pick.id ORDER BY pick.id) INTO ids FROM pick;
    END IF;
    FOR r IN WITH d AS (DELETE FROM messages m WHERE m.queue_id = p_dlq AND m.id = ANY (ids)
                        RETURNING m.*)
             SELECT * FROM d ORDER BY d.id LOOP
        INSERT INTO messages (queue_id, visible_at, sent_at, message_id, group_id, body_json,
                              body, attributes, payload_id)
        VALUES (coalesce(p_to, r.source_queue_id), now(), r.sent_at, r.message_id, r.group_id,
                r.body_json, r.body, r.attributes, r.payload_id);
        moved := moved + 1;
    END LOOP;
    IF moved > 0 THEN
        PERFORM mq_notify(q.id) FROM queues q
        WHERE q.id = p_to OR (p_to IS NULL AND q.dead_letter_queue_id = p_dlq);
    END IF;
END
$$;

-- As in 032, skipping rows other transactions hold, and counting all it deleted.
CREATE OR REPLACE FUNCTION mq_sweep(p_batch int, p_window int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    n bigint := 0;
    k bigint;
    expired bigint;
    kept timestamptz;
    walked bigint;
    walked_to bigint;
    upto bigint;
    closed text[];
BEGIN
    FOR q IN SELECT x.id, make_interval(secs => x.retention_seconds) AS retention,
                    coalesce(s.walked, 0) AS walked
             FROM queues x LEFT JOIN queue_sweeps s ON s.queue_id = x.id
             WHERE s.next_at IS NULL OR s.next_at <= now() LOOP
        WITH w AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                   ORDER BY id LIMIT p_window),
             w2 AS (SELECT id, sent_at FROM messages WHERE queue_id = q.id
                      AND id > greatest(q.walked, (SELECT max(w.id) FROM w))
                    ORDER BY id LIMIT p_window),
             a AS (SELECT * FROM w UNION ALL SELECT * FROM w2),
             d AS (DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
                       SELECT x.id FROM messages x WHERE x.queue_id = q.id AND x.id IN (
                           SELECT a.id FROM a WHERE a.sent_at < now() - q.retention
                           LIMIT p_batch)
                       FOR UPDATE SKIP LOCKED)
                   RETURNING m.group_id, m.receive_count > 0 AND m.visible_at > now() AS held)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM a WHERE a.sent_at < now() - q.retention),
               (SELECT min(a.sent_at) FROM a WHERE a.sent_at >= now() - q.retention),
               (SELECT CASE WHEN count(*) = p_window THEN max(w2.id) ELSE 0 END FROM w2),
               (SELECT array_agg(DISTINCT d.group_id) FROM d
                WHERE d.held AND d.group_id IS NOT NULL)
        INTO k, expired, kept, walked_to, closed;
        IF closed IS NOT NULL THEN -- FIFO groups whose message in flight expired: reopen
            UPDATE message_groups g SET in_flight_until = coalesce(
                (SELECT max(m.visible_at) FROM messages m
                 WHERE m.queue_id = q.id AND m.group_id = g.group_id
                   AND m.receive_count > 0 AND m.visible_at > now()), now())
            WHERE g.ctid IN (SELECT x.ctid FROM message_groups x
                             WHERE x.queue_id = q.id AND x.group_id = ANY (closed)
                             FOR UPDATE SKIP LOCKED);
        END IF;
        IF expired > k THEN
            walked_to := q.walked; -- expired messages left behind: walk on once they are gone
        END IF;
        n := n + k;
        INSERT INTO queue_sweeps (queue_id, next_at, walked)
        VALUES (q.id, CASE WHEN expired > k THEN now()
                           ELSE least(kept + q.retention, now() + interval '1 minute') END,
                walked_to)
        ON CONFLICT (queue_id) DO UPDATE SET next_at = excluded.next_at, walked = excluded.walked;
    END LOOP;
    DELETE FROM dedup_entries d WHERE d.ctid IN (
        SELECT ctid FROM dedup_entries WHERE expires_at < now() LIMIT p_batch
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    DELETE FROM topic_dedup d WHERE d.ctid IN (
        SELECT ctid FROM topic_dedup WHERE expires_at < now() LIMIT p_batch
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS k = ROW_COUNT;
    n := n + k;
    DELETE FROM push_deliveries d WHERE d.id IN (
        SELECT id FROM push_deliveries WHERE next_attempt_at = 'infinity'
          AND created_at < now() - interval '7 days' LIMIT p_batch);
    DELETE FROM queue_listeners WHERE until < now(); -- processes that died without cleaning up
    FOR q IN SELECT queue_id AS id FROM deleted_queues LOOP
        DELETE FROM messages m WHERE m.queue_id = q.id AND m.id IN (
            SELECT x.id FROM messages x WHERE x.queue_id = q.id LIMIT p_batch);
        DELETE FROM message_groups WHERE queue_id = q.id;
        DELETE FROM queue_sweeps WHERE queue_id = q.id;
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
    GET DIAGNOSTICS k = ROW_COUNT;
    UPDATE sweep_cursors SET after = coalesce(upto, 0) WHERE name = 'payloads';
    RETURN n + k;
END
$$;

-- As in 032, refreshing the group of a message found gone.
CREATE OR REPLACE FUNCTION mq_by_receipt(p_queue int, p_id bigint, p_nonce bigint, p_secs int)
RETURNS int
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
        IF FOUND THEN
            RETURN 1;
        END IF;
        IF g IS NOT NULL THEN -- gone meanwhile; a sweep that deleted it skipped our group
            PERFORM mq_refresh_group(p_queue, g);
        END IF;
        RETURN 2;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM mq_refresh_group(p_queue, g);
        IF EXISTS (SELECT 1 FROM message_groups mg WHERE mg.queue_id = p_queue
                     AND mg.group_id = g AND mg.in_flight_until <= now())
           AND EXISTS (SELECT 1 FROM messages m WHERE m.queue_id = p_queue AND m.group_id = g
                         AND m.visible_at <= now()) THEN
            PERFORM mq_notify(p_queue);
        END IF;
    ELSIF p_secs = 0 THEN
        PERFORM mq_notify(p_queue);
    END IF;
    RETURN 0;
END
$$;

-- As in 027, refreshing the group of a message found gone.
CREATE OR REPLACE FUNCTION mq_hold(p_queue int, p_id bigint, p_nonce bigint) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    g text;
    r bigint;
BEGIN
    SELECT m.group_id INTO g FROM messages m WHERE m.queue_id = p_queue AND m.id = p_id;
    IF NOT FOUND THEN
        RETURN 2;
    END IF;
    IF g IS NOT NULL THEN
        PERFORM 1 FROM message_groups mg
        WHERE mg.queue_id = p_queue AND mg.group_id = g FOR UPDATE;
    END IF;
    SELECT m.receipt INTO r FROM messages m
    WHERE m.queue_id = p_queue AND m.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF g IS NOT NULL THEN -- gone meanwhile; a sweep that deleted it skipped our group
            PERFORM mq_refresh_group(p_queue, g);
        END IF;
        RETURN 2;
    END IF;
    RETURN CASE WHEN r IS NOT DISTINCT FROM p_nonce THEN 0 ELSE 1 END;
END
$$;
