-- 001: the foundation: API tokens.
--
-- Tokens are stored as the SHA-256 of the secret only; the secret itself is shown once, when the
-- token is created, and never stored. seq orders the list and is the pagination cursor. At most
-- one token is the bootstrap token: setting another RYDES_ADMIN_TOKEN replaces (revokes) it.
CREATE TABLE tokens (
    id          uuid        PRIMARY KEY,
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    name        text        NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    role        text        NOT NULL CHECK (role IN ('app', 'service', 'admin')),
    secret_hash bytea       NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    bootstrap   boolean     NOT NULL DEFAULT false, -- the token of RYDES_ADMIN_TOKEN
    created_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE tokens IS 'API bearer tokens; only SHA-256 hashes of the secrets are kept';
