-- 049: quotes sent at the same moment are ordered by their messages. rfq_add_quote (037) let a
-- quote replace the stored one when it was sent no earlier (sent_at <=): an original and its
-- revision sent in one batch, or merged into one statement by the send combiner, or within one
-- millisecond (the aggregator reads sent_at to the millisecond) carry the same sent_at, and the
-- original, retried after the revision was stored, replaced it. A quote now also carries its
-- message's id (messages.id, from one sequence, in insert order) and of two sent at the same
-- time the later-inserted one stands. A dead-letter move or a redrive inserts the message anew
-- (a higher id, the same sent_at): an original dead-lettered and redriven while its RFQ still
-- runs wins the tie again (left: rare, and an operator's act). The five-argument form (a
-- binary from before 049) passes no id: its quotes replace as before.

ALTER TABLE rfq_quotes ADD COLUMN message_seq bigint;
COMMENT ON COLUMN rfq_quotes.message_seq IS
    'the id of the quote''s message (NULL: not known); of two quotes sent at the same time the '
    'higher one stands';

CREATE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric, p_goodies jsonb,
                              p_sent_at timestamptz, p_seq bigint)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n int;
BEGIN
    SELECT status, eta, expected_responses, recipients INTO r FROM rfqs WHERE id = p_rfq
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    IF r.status <> 'running' OR r.eta <= clock_timestamp() THEN
        RETURN 'finished';
    END IF;
    IF r.recipients IS NOT NULL AND NOT coalesce(p_unicorn = ANY (r.recipients), false) THEN
        RETURN 'not_asked';
    END IF;
    INSERT INTO rfq_quotes AS q (rfq_id, unicorn, price, goodies, sent_at, message_seq)
    VALUES (p_rfq, p_unicorn, p_price, coalesce(p_goodies, '[]'), p_sent_at, p_seq)
    ON CONFLICT (rfq_id, unicorn) DO UPDATE
        SET price = EXCLUDED.price, goodies = EXCLUDED.goodies, received_at = now(),
            sent_at = coalesce(EXCLUDED.sent_at, q.sent_at),
            message_seq = CASE WHEN EXCLUDED.sent_at IS NULL THEN q.message_seq
                               ELSE EXCLUDED.message_seq END
        -- a quote of unknown time (an older binary's) does not replace one of known time; of
        -- two sent at the same time, the one whose message came later (or of unknown id) does
        WHERE q.sent_at IS NULL OR q.sent_at < EXCLUDED.sent_at
           OR (q.sent_at = EXCLUDED.sent_at
               AND (q.message_seq IS NULL OR EXCLUDED.message_seq IS NULL
                    OR q.message_seq <= EXCLUDED.message_seq));
    IF NOT FOUND THEN
        RETURN 'superseded';
    END IF;
    SELECT count(*) INTO n FROM rfq_quotes WHERE rfq_id = p_rfq;
    IF n >= r.expected_responses THEN
        UPDATE rfqs SET status = 'done', completion_reason = 'all_answered',
                        completed_at = least(clock_timestamp(), r.eta)
        WHERE id = p_rfq;
        RETURN 'completed';
    END IF;
    RETURN 'stored';
END
$$;

CREATE OR REPLACE FUNCTION rfq_add_quote(p_rfq uuid, p_unicorn text, p_price numeric,
                                         p_goodies jsonb, p_sent_at timestamptz)
RETURNS text
LANGUAGE sql AS $$
    SELECT rfq_add_quote(p_rfq, p_unicorn, p_price, p_goodies, p_sent_at, NULL::bigint)
$$;
