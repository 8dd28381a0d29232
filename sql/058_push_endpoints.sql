-- 058: the endpoint of a push subscription's URL, as the push worker's per-endpoint share counts it.
--
-- A push worker lets one endpoint (scheme, host and port) hold at most 4 of its 16 slots
-- (src/mq/push.c). It took the endpoint as the URL's text up to the path, lower-cased, so one
-- server spelt two ways was two endpoints with a share each: http://h/ and http://h:80/,
-- https://h/ and https://h:443/, http://h:8080/ and http://h:08080/ (curl reads the port as a
-- number). push_endpoint spells the port out, without leading zeros, the scheme's default when
-- the URL has none. Host names are compared as written, lower-cased: h and h. (or an address and
-- a name for it) may or may not be one server, and the share stays per spelling.
--
-- Subscription URLs are http or https with a host and no credentials (src/api/mq_input.c);
-- anything else gives NULL, and the caller takes the subscription as its own endpoint.

CREATE FUNCTION push_endpoint(p_url text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    -- scheme, host (a bracketed address or a name), the port's digits after leading zeros
    m text[] := regexp_match(lower(p_url),
                             '^(https?)://(\[[^]/?#]*\]|[^:/?#\[\]]+)(?::0*([0-9]+)|:)?(?:[/?#]|$)');
BEGIN
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN m[1] || '://' || m[2] || ':' || coalesce(m[3], CASE m[1] WHEN 'https' THEN '443'
                                                                    ELSE '80' END);
END
$$;

COMMENT ON FUNCTION push_endpoint(text) IS
    'scheme://host:port of a push URL, the port spelt out (default 80/443, no leading zeros); '
    'the unit the push worker shares its slots by; NULL for anything but an http(s) URL';
