-- A send alone through the engine's SQL: the statement src/mq/messages.c prepares as
-- mq_send_rows_1 (no process waits on the queue, so no NOTIFY: see mq_hub_listened).
INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes)
VALUES (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb);
