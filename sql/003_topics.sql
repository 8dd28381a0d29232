-- 003: topics and subscriptions (publish-subscribe).
--
-- A publish stores its body once in payloads and inserts one message per matching queue
-- subscription in the same transaction (src/mq/topics.c); filter policies are evaluated in C,
-- compiled once per process from subscriptions.filter_policy.
CREATE TABLE topics (
    id                  int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text        NOT NULL UNIQUE
                                    CHECK (length(name) <= 256
                                           AND name ~ '^[A-Za-z0-9_-]+(\.fifo)?$'),
    fifo                boolean     NOT NULL DEFAULT false,
    content_based_dedup boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (fifo = (name LIKE '%.fifo')),
    CHECK (NOT content_based_dedup OR fifo)
);

CREATE TABLE subscriptions (
    id                  int         GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id            int         NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    name                text        NOT NULL CHECK (name ~ '^[A-Za-z0-9_-]{1,80}$'),
    queue_id            int         NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    filter_policy       jsonb,
    filter_scope        text        NOT NULL DEFAULT 'attributes'
                                    CHECK (filter_scope IN ('attributes', 'body')),
    raw_delivery        boolean     NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic_id, name)
);

CREATE INDEX subscriptions_queue ON subscriptions (queue_id);

COMMENT ON TABLE topics IS 'publish-subscribe channels';
COMMENT ON TABLE subscriptions IS 'a topic''s queues, each with an optional SNS filter policy';

CREATE VIEW topic_subscriptions AS
SELECT t.name AS topic, s.name AS subscription, q.name AS queue, s.raw_delivery,
       s.filter_scope, s.filter_policy
FROM subscriptions s JOIN topics t ON t.id = s.topic_id JOIN queues q ON q.id = s.queue_id
ORDER BY t.name, s.name;
