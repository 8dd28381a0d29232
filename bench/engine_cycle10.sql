-- The engine cycle with batches of 10, as src/mq/messages.c runs it: one batch send (mq_send:
-- the ten-row INSERT mq_send_rows_10, its 60 parameters written here as constants), one receive
-- of up to 10 (mq_claim), one DELETE of all receipts (mq_delete_rows, which the batch delete
-- runs; its one-by-one retry of misses never runs here). A full scan in 1 of 7000 claims: about
-- once a second at the 6-7k transactions/s measured here, as every process makes once a second.
-- Start with -D qid=QUEUE_ID -D hint=0.
\set nonce random(1, 9000000000000000000)
-- the claim's parameters, as q_claim has them: batch, visibility, max receive count (none)
\set max 10
\set vt 30
\set mrc 2147483647
\set full random(1, 7000)
INSERT INTO messages (queue_id, visible_at, message_id, body_json, body, attributes)
VALUES (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb),
       (:qid::int, now() + make_interval(secs => 0::int), '7d444840-9dc0-11d1-b245-5ffdce74fad2'::uuid,
        true::boolean, '{"from": "Berlin", "to": "Frankfurt", "fare": 256.5}'::text, NULL::jsonb);
WITH c AS (SELECT m.ctid AS t, m.id, m.receive_count AS rc0 FROM messages m WHERE m.queue_id = :qid::int
           AND m.id >= (CASE WHEN :full = 1 THEN 0 ELSE greatest(:hint::bigint - 1000, 0) END)
           AND m.visible_at <= now() ORDER BY m.id LIMIT :max FOR UPDATE SKIP LOCKED),
u AS (UPDATE messages m SET visible_at = now() + make_interval(secs => :vt),
             receive_count = m.receive_count + (c.rc0 < :mrc)::int, receipt = (('x' || encode(substr(sha224(int8send(m.id) || int8send(:nonce::bigint)), 1, 8), 'hex'))::bit(64)::bigint & 9223372036854775807),
             first_received_at = coalesce(m.first_received_at, now())
      FROM c WHERE m.ctid = c.t
      RETURNING m.id, m.message_id, m.receipt,
          CASE WHEN m.payload_id IS NULL THEN m.body ELSE (SELECT p.body FROM payloads p WHERE p.id = m.payload_id) END,
          m.body_json, m.attributes,
          m.receive_count, m.sent_at, m.first_received_at, m.visible_at,
          mq_state(m.visible_at, m.receive_count), m.group_id, c.rc0 >= :mrc)
-- (pgbench needs exactly one row for \gset, so the claimed rows are aggregated here)
SELECT coalesce(array_agg(u.id), '{}')::text AS ids, coalesce(array_agg(u.receipt), '{}')::text AS receipts,
       coalesce(array_agg(:qid::int), '{}')::text AS qids, coalesce(min(u.id), :hint::bigint) AS hint FROM u \gset
DELETE FROM messages m WHERE m.ctid = ANY (ARRAY(
    SELECT (SELECT x.ctid FROM messages x WHERE x.queue_id = r.queue_id AND x.id = r.id AND x.receipt = r.nonce)
    FROM unnest(:qids::int[], :ids::bigint[], :receipts::bigint[]) AS r(queue_id, id, nonce)))
  AND m.receipt = (:receipts::bigint[])[array_position(:ids::bigint[], m.id)]
  AND m.queue_id = (:qids::int[])[array_position(:ids::bigint[], m.id)]
RETURNING m.queue_id, m.id;
