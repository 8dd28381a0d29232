-- 043: FIFO groups at any depth, and a fairer serve order.
--
-- Whether a FIFO group still has a message in flight (mq_refresh_group, run by every delete and
-- visibility change of a FIFO message, and the retention sweep) was read from every message of
-- the group: the index leads to the group, not to its messages in flight. Draining one group of
-- N messages cost O(N^2): a receive and delete took 1 ms with 400 waiting, 3.4 ms with 20,000
-- and 9.4 ms with 60,000. A group now remembers the highest id it ever leased (leased_upto,
-- written by mq_take_group): every message in flight has an id at or below it (messages enter
-- a group with new ids), and the messages at or below it are those delivered and not deleted
-- yet, a receive's batch at most. Rows from before this migration (NULL) are read whole, as
-- before, until the group is emptied and made anew.
--
-- A group whose first message was not visible yet (a queue's delay_seconds) kept its place at
-- the front of the serve order, so every receive locked and passed over it; it now waits, out
-- of the order, until that message becomes visible (or, should it be in flight, its lease
-- ends). New groups used to start at '-infinity', ahead of every group that had had a turn:
-- under a steady stream of new groups the others waited. They start at now(), behind the
-- groups that became ready before them. The retention sweep reopens a group whose delayed head
-- it deleted, and picks the groups it reopens by key: by ctid it missed a row a send had just
-- written anew, and the group stayed closed.
--
-- mq_delete_queue deleted a FIFO queue's dedup ids before its groups, the opposite of a send
-- (groups in group_id order, then dedup ids, 034): a send renewing a dedup id while holding its
-- group deadlocked with the delete. It locks the groups first now, in a send's order.

-- Groups from before this migration get NULL (what they leased is not known: a receipt handed
-- out before may still extend a message's lease) and keep it; new groups start at 0.
ALTER TABLE message_groups ADD COLUMN leased_upto bigint;
ALTER TABLE message_groups ALTER COLUMN leased_upto SET DEFAULT 0,
    ALTER COLUMN in_flight_until SET DEFAULT now();

COMMENT ON COLUMN message_groups.leased_upto IS
    'highest message id this group ever leased: every message in flight is at or below it '
    '(NULL: a group from before migration 043, read whole)';

-- Until when the group has a message in flight (now(): none), reading only its messages at or
-- below p_upto (NULL: all).
CREATE FUNCTION mq_group_held_until(p_queue int, p_group text, p_upto bigint)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(m.visible_at), now()) FROM messages m
    WHERE m.queue_id = p_queue AND m.group_id = p_group
      AND m.id <= coalesce(p_upto, 9223372036854775807)
      AND m.receive_count > 0 AND m.visible_at > now()
$$;

CREATE OR REPLACE FUNCTION mq_refresh_group(p_queue int, p_group text) RETURNS void
LANGUAGE sql AS $$
    UPDATE message_groups g
    SET in_flight_until = mq_group_held_until(p_queue, p_group, g.leased_upto)
    WHERE g.queue_id = p_queue AND g.group_id = p_group
$$;

-- As in 002, remembering the last id leased, closing a group whose first message is not visible
-- yet until it is, and closing a group only once its lease took something (it was closed first:
-- when the retention sweep deleted the chosen messages meanwhile, the group stayed closed for
-- a lease with nothing in flight).
CREATE OR REPLACE FUNCTION mq_take_group(q queues, p_group text, p_need int, p_vt int,
                                         p_nonce bigint, p_delete boolean)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    max_rc int := CASE WHEN q.dead_letter_queue_id IS NULL THEN 2147483647
                       ELSE q.max_receive_count END;
    last_id bigint;
    head_visible timestamptz;
    leased int;
BEGIN
    SELECT max(s.id) INTO last_id FROM (
        SELECT m.id, bool_and(m.visible_at <= now() AND m.receive_count < max_rc)
                     OVER (ORDER BY m.id) AS ok
        FROM messages m WHERE m.queue_id = q.id AND m.group_id = p_group
        ORDER BY m.id LIMIT p_need
    ) s WHERE s.ok;
    IF last_id IS NULL THEN
        SELECT m.visible_at INTO head_visible FROM messages m
        WHERE m.queue_id = q.id AND m.group_id = p_group ORDER BY m.id LIMIT 1;
        IF head_visible > now() THEN -- nothing of the group can go before it
            UPDATE message_groups mg
            SET in_flight_until = greatest(head_visible,
                                           mq_group_held_until(q.id, p_group, mg.leased_upto))
            WHERE mg.queue_id = q.id AND mg.group_id = p_group;
        END IF;
        RETURN;
    END IF;
    IF p_delete THEN
        RETURN QUERY
        DELETE FROM messages m
        WHERE m.queue_id = q.id AND m.group_id = p_group AND m.id <= last_id
        RETURNING m.queue_id, m.id, m.visible_at, m.receive_count + 1, p_nonce,
                  coalesce(m.first_received_at, now()), m.sent_at, m.message_id, m.group_id,
                  m.source_queue_id, m.body_json, m.body, m.attributes, m.payload_id;
        -- the group stays open but moves to the back of the serve order, so one busy group
        -- cannot starve the others
        UPDATE message_groups mg SET in_flight_until = now()
        WHERE mg.queue_id = q.id AND mg.group_id = p_group;
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
    GET DIAGNOSTICS leased = ROW_COUNT;
    -- in flight until the lease ends (visibility 0: open, at the back of the order); closed
    -- only once something was leased: messages the retention sweep deleted meanwhile are not
    IF leased > 0 THEN
        UPDATE message_groups mg
        SET in_flight_until = now() + make_interval(secs => p_vt),
            leased_upto = CASE WHEN mg.leased_upto IS NULL THEN NULL
                               ELSE greatest(mg.leased_upto, last_id) END
        WHERE mg.queue_id = q.id AND mg.group_id = p_group;
    END IF;
END
$$;

-- As in 041, the groups locked first, in the order a send locks them.
CREATE OR REPLACE FUNCTION mq_delete_queue(p_name text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    qid int;
BEGIN
    SELECT q.id INTO qid FROM queues q WHERE q.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- in the order sends and receives lock: groups (by group_id), dedup ids, messages
    PERFORM 1 FROM message_groups WHERE queue_id = qid ORDER BY group_id FOR UPDATE;
    DELETE FROM message_groups WHERE queue_id = qid;
    DELETE FROM dedup_entries WHERE queue_id = qid;
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

-- As in 041, reopening a group from its messages at or below leased_upto only; also a group
-- whose delayed head it deleted (closed until that head was due), and choosing the groups by
-- key, not ctid (a send's mq_touch_group writes a new version of the row: the locked version's
-- ctid was not the one the UPDATE saw, and the group stayed closed).
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
                   RETURNING m.group_id, m.visible_at > now() AS held)
        SELECT (SELECT count(*) FROM d),
               (SELECT count(*) FROM a WHERE a.sent_at < now() - q.retention),
               (SELECT min(a.sent_at) FROM a WHERE a.sent_at >= now() - q.retention),
               (SELECT CASE WHEN count(*) = p_window THEN max(w2.id) ELSE 0 END FROM w2),
               (SELECT array_agg(DISTINCT d.group_id) FROM d
                WHERE d.held AND d.group_id IS NOT NULL)
        INTO k, expired, kept, walked_to, closed;
        IF closed IS NOT NULL THEN -- FIFO groups closed by a message it deleted: reopen
            UPDATE message_groups g
            SET in_flight_until = mq_group_held_until(q.id, g.group_id, g.leased_upto)
            WHERE g.queue_id = q.id AND g.group_id IN (
                SELECT x.group_id FROM message_groups x
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
