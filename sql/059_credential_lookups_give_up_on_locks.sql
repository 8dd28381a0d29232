-- 059: credential lookups give up on a lock after 250 ms.
--
-- The gateway looks a bearer token or an AWS access key up on its HTTP thread when its
-- one-second cache misses (src/app/app.c, src/aws/dispatch.c), and every connection of that
-- thread waits while the lookup runs. A lock on tokens or aws_credentials (DDL, a migration,
-- VACUUM FULL, an operator's LOCK TABLE) made the lookup wait up to the statement timeout, so
-- one request with a made-up token held every other one, /healthz included, for seconds (a
-- black-box probe measured 8.5 s). The lookups now run in functions with lock_timeout 250 ms: a
-- request that meets such a lock gets 503 with Retry-After, and the rest wait 250 ms at most for
-- it. (The functions are not inlined, having a SET clause: the lock is taken inside them, under
-- their setting. A lookup that is merely slow still takes what it takes.)

CREATE FUNCTION token_lookup(p_hash bytea) RETURNS TABLE (role text, secret_hash bytea)
LANGUAGE sql STABLE SET lock_timeout = '250ms' AS $$
    SELECT t.role, t.secret_hash FROM tokens t WHERE t.secret_hash = p_hash
$$;

COMMENT ON FUNCTION token_lookup(bytea) IS
    'role and secret_hash of the token whose hash is p_hash; waits 250 ms at most for a lock';

CREATE FUNCTION aws_credentials_lookup(p_access_key_id text)
RETURNS TABLE (secret text, role text, secret_hash bytea)
LANGUAGE sql STABLE SET lock_timeout = '250ms' AS $$
    SELECT a.secret, t.role, t.secret_hash FROM aws_credentials a
      JOIN tokens t ON t.id = a.token_id
     WHERE a.access_key_id = p_access_key_id
$$;

COMMENT ON FUNCTION aws_credentials_lookup(text) IS
    'secret, role and token hash of access key p_access_key_id; waits 250 ms at most for a lock';
