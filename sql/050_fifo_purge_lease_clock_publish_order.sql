-- 050: what a review of the FIFO SQL found.
--
-- mq_purge (019) locked the groups that existed when it began and then deleted every group of
-- the queue with its messages in one statement. A group made while the purge waited for a lock
-- was not locked: a send that wrote the group anew and committed after that statement's
-- snapshot kept its message, which the snapshot did not see, and lost the group row, which the
-- delete re-read and took; a message without its group is never handed out. A receive holding
-- such a group while the purge waited on one of its messages deadlocked with it. The purge now
-- deletes no group: it deletes the messages and reopens the groups it locked (nothing of them is
-- in flight any more), and reads again the state of the closed groups made meanwhile that it
-- can lock without waiting (one whose leased message it deleted would stay closed until the
-- lease ended); receives delete the groups left empty, under their own lock, as they always
-- have.
--
-- mq_take_group leased from now(), the start of the receive's transaction: a receive that
-- waited for a lock on one of the group's messages (a retention sweep deleting it, up to its
-- statement timeout) could lease the rest, and close the group, until a time already past, so
-- that another receive took the same group at once. Leases count from the clock once the rows
-- are the receive's (clock_timestamp()).
--
-- mq_publish_fifo inserted the topic's dedup id and then locked each FIFO target's group; a
-- publish batch (and a queue send, 034) locks groups first: a single publish and a batch with
-- the same content-based dedup id and group deadlocked. The groups come first now.
--
-- mq_delete_queue (043) deleted the queue's dedup ids after its groups; a batch send into
-- groups made after the delete locked the queue's groups holds those groups and some dedup ids
-- and then claims more: the delete, having deleted one the send claims next, waited for one the
-- send holds, and they deadlocked. The dedup ids of a deleted queue are left to the sweeper,
-- which clears what sends leave in a deleted queue for ten minutes anyway.

CREATE OR REPLACE FUNCTION mq_purge(p_queue int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    held text[];
    other record;
BEGIN
    -- locked first, in a send's order: a send to one of them waits for the purge
    SELECT coalesce(array_agg(g.group_id), '{}') INTO held FROM (
        SELECT mg.group_id FROM message_groups mg WHERE mg.queue_id = p_queue
        ORDER BY mg.group_id FOR UPDATE
    ) g;
    DELETE FROM messages WHERE queue_id = p_queue;
    UPDATE message_groups mg SET in_flight_until = now()
    WHERE mg.queue_id = p_queue AND mg.group_id = ANY (held);
    -- a group made meanwhile whose leased message the delete took would stay closed until
    -- that lease ended: its state is read again under its lock, unless someone holds it
    FOR other IN
        SELECT mg.group_id FROM message_groups mg
        WHERE mg.queue_id = p_queue AND NOT (mg.group_id = ANY (held))
          AND mg.in_flight_until > now()
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM mq_refresh_group(p_queue, other.group_id);
    END LOOP;
END
$$;

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
    SET visible_at = clock_timestamp() + make_interval(secs => p_vt),
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
        SET in_flight_until = clock_timestamp() + make_interval(secs => p_vt),
            leased_upto = CASE WHEN mg.leased_upto IS NULL THEN NULL
                               ELSE greatest(mg.leased_upto, last_id) END
        WHERE mg.queue_id = q.id AND mg.group_id = p_group;
    END IF;
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
    -- the groups first, in queue order, as a batch and a queue send take them (034)
    FOR t IN
        SELECT x.q FROM unnest(p_targets) AS x(q) JOIN queues q ON q.id = x.q
        WHERE q.fifo ORDER BY x.q
    LOOP
        PERFORM mq_touch_group(t.q, p_group);
    END LOOP;
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

-- As in 043, leaving the dedup ids to the sweeper.
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
    -- (its dedup ids are the sweeper's, as everything a send leaves in a deleted queue)
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
