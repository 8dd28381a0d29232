-- 011: the AWS wire protocols (src/aws/): access keys for Signature Version 4 and queue tags.
--
-- An access key belongs to a bearer token and acts with its role; deleting the token deletes
-- its keys. SigV4 needs the secret itself to compute the HMAC (a hash would not do), so the
-- secret is stored as issued: this table is as sensitive as the database's credentials
-- (README, Threat model). Tags are SQS queue tags, deleted with their queue.
CREATE TABLE aws_credentials (
    access_key_id text        PRIMARY KEY CHECK (access_key_id ~ '^AKID[A-Z0-9]{16}$'),
    token_id      uuid        NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    secret        text        NOT NULL CHECK (length(secret) = 40),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aws_credentials_token ON aws_credentials (token_id);

COMMENT ON TABLE aws_credentials IS
    'SigV4 access keys of tokens; the secret is kept because HMAC verification needs it';

-- Tags change rarely, so the foreign key's lock on the queue row costs nothing here (unlike on
-- messages, README "Queues").
CREATE TABLE queue_tags (
    queue_id int  NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    key      text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value    text NOT NULL CHECK (length(value) <= 256),
    PRIMARY KEY (queue_id, key)
);
