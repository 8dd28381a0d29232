-- The engine cycle with batches of 10, as src/mq/messages.c runs it: one batch send (mq_send,
-- json_to_recordset), one receive of up to 10 (mq_claim), one DELETE per receipt (the API's
-- batch delete). Start with -D qid=QUEUE_ID -D hint=0.
\set nonce random(1, 9000000000000000000)
\set full random(1, 800)
WITH ins AS (INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes)
             SELECT :qid::int, now() + make_interval(secs => x.delay), x.message_id, x.body_json, x.body, x.attributes
             FROM json_to_recordset((SELECT json_agg(json_build_object('message_id', gen_random_uuid(), 'delay', 0, 'body', '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}', 'body_json', true)) FROM generate_series(1, 10)))
                  AS x(message_id uuid, delay int, body text, body_json boolean, attributes jsonb)
             RETURNING id)
SELECT count(*), CASE WHEN EXISTS (SELECT 1 FROM queue_listeners WHERE queue_id = :qid::int AND until > now())
                    THEN pg_notify('rydes_mq', :qid::text)::text END FROM ins;
WITH c AS (SELECT m.id, m.receive_count AS rc0 FROM messages m WHERE m.queue_id = :qid::int
           AND m.id >= (CASE WHEN :full = 1 THEN 0 ELSE greatest(:hint::bigint - 1000, 0) END)
           AND m.visible_at <= now() ORDER BY m.id LIMIT 10 FOR UPDATE SKIP LOCKED),
u AS (UPDATE messages m SET visible_at = now() + make_interval(secs => 30),
             receive_count = m.receive_count + (c.rc0 < 2147483647)::int, receipt = :nonce,
             first_received_at = coalesce(m.first_received_at, now())
      FROM c WHERE m.queue_id = :qid::int AND m.id = c.id
      RETURNING m.*, c.rc0 >= 2147483647 AS exhausted)
SELECT coalesce(array_agg(u.id), '{}')::text AS ids, coalesce(min(u.id), :hint::bigint) AS hint
FROM u \gset
DELETE FROM messages WHERE queue_id = :qid::int AND id = ANY (:ids::bigint[]) AND receipt = :nonce;
