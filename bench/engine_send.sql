-- A send alone through the engine's SQL: the statement src/mq/messages.c prepares as
-- mq_send_one (NOTIFY only when a process has long polls waiting on the queue).
INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes)
VALUES (:qid::int, now() + make_interval(secs => 0), '7d444840-9dc0-11d1-b245-5ffdce74fad2', true,
        '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}', NULL)
RETURNING id, CASE WHEN EXISTS (SELECT 1 FROM queue_listeners WHERE queue_id = :qid::int AND until > now())
                    THEN pg_notify('rydes_mq', :qid::text)::text END;
