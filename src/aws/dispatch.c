/* POST / and POST /{account}/{queue}: the entry of the AWS protocols; see include/rydes/aws.h.
 *
 * Order of checks, as AWS makes them: a signature must be there and well formed, the access key
 * must be of the issued form (before any database work) and exist (app->aws_key_cache for a
 * second, then the database, on a data-plane thread: http_admit_elsewhere), all that before the
 * body is read (aws_before_body: no bytes are buffered for an anonymous client), the date must
 * be within 15 minutes and the signature must match;
 * then the request is charged to its token's rate limit, and only then is the body parsed and
 * the operation chosen. The protocol follows X-Amz-Target (AWS JSON 1.0) or its absence (query
 * protocol, form-encoded with Action=); the service follows the signature's scope (sqs or sns).
 * Secrets live only in the credential cache, in the call (the key found with the headers) and on
 * this file's stack; the last two are wiped. */
#include "rydes/aws.h"

#include "rydes/app.h"
#include "rydes/body.h"
#include "rydes/clock.h"
#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/router.h"
#include "rydes/sigv4.h"
#include "rydes/validate.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void call_free(void *p)
{
    struct aws_call *call = p;
    if (call->op_state_free)
        call->op_state_free(call->op_state);
    json_decref(call->in);
    OPENSSL_cleanse(&call->key, sizeof call->key);
    free(call);
}

struct db_conn *aws_db(struct aws_call *call, enum handler_result *res)
{
    struct app *app = call->req->app;
    enum db_acquire_error why;
    struct db_conn *c = db_pool_acquire(app->pool, (int)app->cfg->db_acquire_timeout_ms, &why);
    if (!c) {
        http_add_header(call->req, "Retry-After", "1");
        *res = aws_fail(call, WIRE_UNAVAILABLE, "The database is unavailable; retry.");
    }
    return c;
}

void aws_db_release(struct aws_call *call, struct db_conn *c)
{
    db_pool_release(call->req->app->pool, c);
}

static enum handler_result reply_text(struct aws_call *call, int status, char *text)
{
    http_add_header(call->req, "x-amzn-RequestId", call->req->request_id);
    const char *type =
        call->protocol == AWS_PROTOCOL_JSON ? "application/x-amz-json-1.0" : "text/xml";
    enum handler_result r = http_reply(call->req, status, type, text, strlen(text));
    free(text);
    return r;
}

enum handler_result aws_reply(struct aws_call *call, json_t *result)
{
    if (call->protocol == AWS_PROTOCOL_JSON) {
        if (!result)
            result = json_object(); /* released below, like a given result */
        char *text = json_dumps(result, JSON_COMPACT);
        json_decref(result);
        return text ? reply_text(call, 200, text)
                    : aws_fail(call, WIRE_INTERNAL, "The response could not be encoded.");
    }
    struct buf b;
    buf_init(&b);
    if (strcmp(call->xmlns, AWS_SNS_XMLNS) == 0)
        wire_xml_response_sns(&b, call->xmlns, call->op, result, call->req->request_id);
    else
        wire_xml_response(&b, call->xmlns, call->op, result, call->req->request_id);
    json_decref(result);
    return reply_text(call, 200, buf_steal(&b));
}

enum handler_result aws_fail(struct aws_call *call, enum wire_err e, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    msg[validate_utf8_prefix(msg, sizeof msg - 1)] = '\0';
    const struct wire_error *info = wire_error_info(e);
    if (call->protocol == AWS_PROTOCOL_JSON) {
        char qe[160];
        snprintf(qe, sizeof qe, "%s;%s", info->code, info->sender ? "Sender" : "Receiver");
        http_add_header(call->req, "x-amzn-query-error", qe);
        json_t *body = wire_error_json(info, call->json_ns, msg);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        return reply_text(call, info->status, text);
    }
    struct buf b;
    buf_init(&b);
    wire_error_xml(&b, call->xmlns, info, msg, call->req->request_id);
    return reply_text(call, info->status, buf_steal(&b));
}

/* Is host (the client's Host header) a host name or address with an optional port, short
 * enough for a queue URL? Anything else would make URLs that are not valid UTF-8 or that
 * snprintf cuts short. */
static bool host_plain(const char *host)
{
    size_t n = host ? strlen(host) : 0;
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".:-[]", host[i]))
            return false;
    return true;
}

void aws_queue_url(struct aws_call *call, const char *name, char *out, size_t n)
{
    const char *host = http_header(call->req, "Host");
    bool tls = call->req->app->tls_cert != NULL;
    snprintf(out, n, "%s://%s/%s/%s", tls ? "https" : "http", host_plain(host) ? host : "localhost",
             AWS_ACCOUNT_ID, name);
}

void aws_arn(struct aws_call *call, const char *service, const char *name, char *out, size_t n)
{
    snprintf(out, n, "arn:aws:%s:%s:%s:%s", service, call->region, AWS_ACCOUNT_ID, name);
}

/* ---- authentication ---- */

static const char *header_of(void *ctx, const char *name)
{
    return http_header(ctx, name);
}

/* Query arguments a signed request may carry (SQS and SNS take theirs in the body; a signed
 * query is a proxy's or a client's addition, kept short). */
#define AWS_MAX_QUERY_ARGS 32

/* The request's query arguments, decoded ('+' is itself, as SigV4 clients mean it). */
struct query_args {
    char *names[AWS_MAX_QUERY_ARGS], *values[AWS_MAX_QUERY_ARGS];
    size_t n;
    bool over; /* more than AWS_MAX_QUERY_ARGS: the signature is not checked */
};

/* libmicrohttpd turns '+' into a space before its unescape callback (which is a no-op here,
 * so no space was sent as such: a request line has none): it is turned back. */
static char *arg_decode(const char *raw)
{
    char *plus = xstrdup(raw ? raw : "");
    for (char *p = plus; *p; p++)
        if (*p == ' ')
            *p = '+';
    char *d = router_percent_decode(plus, strlen(plus));
    if (!d)
        return plus; /* malformed: as sent (it cannot match anyway) */
    free(plus);
    return d;
}

static void add_arg(void *ctx, const char *name, const char *value)
{
    struct query_args *q = ctx;
    if (q->n == AWS_MAX_QUERY_ARGS) {
        q->over = true;
        return;
    }
    q->names[q->n] = arg_decode(name);
    q->values[q->n] = arg_decode(value);
    q->n++;
}

/* The canonical query string of req into out; false when it has too many arguments. */
static bool canonical_query(struct http_request *req, struct buf *out)
{
    struct query_args q = {.n = 0};
    http_query_each(req, add_arg, &q);
    sigv4_canonical_query((const char *const *)q.names, (const char *const *)q.values, q.n, out);
    for (size_t i = 0; i < q.n; i++) {
        free(q.names[i]);
        free(q.values[i]);
    }
    return !q.over;
}

/* Checks the signature with the key's secret; answers the failure. */
static bool verify(struct aws_call *call, const struct sigv4_auth *a, const char *secret,
                   enum handler_result *res)
{
    struct http_request *req = call->req;
    struct buf query;
    buf_init(&query);
    /* too many arguments is said as such: a mismatch would send the client to its keys */
    if (!canonical_query(req, &query)) {
        buf_cleanup(&query);
        bool sns = strcmp(a->service, "sns") == 0;
        *res = aws_fail(call, sns ? WIRE_SNS_INVALID_PARAMETER : WIRE_INVALID_PARAMETER,
                        "The query string has more than %d arguments (the parameters of a call "
                        "go in the body).",
                        AWS_MAX_QUERY_ARGS);
        return false;
    }
    struct sigv4_request r = {req->method, req->path,          buf_str(&query),  header_of,
                              req,         req->body.buf.data, req->body.buf.len};
    int64_t now = clock_wall_us() / 1000000;
    enum sigv4_result v = sigv4_verify(&r, a, secret, now);
    buf_cleanup(&query);
    if (v == SIGV4_OK)
        return true;
    char stamp[17];
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    if (v == SIGV4_NO_DATE)
        *res = aws_fail(call, WIRE_INCOMPLETE_SIGNATURE,
                        "Authorization header requires existence of a valid 'X-Amz-Date' "
                        "header.");
    else if (v == SIGV4_SKEWED)
        *res = aws_fail(call, WIRE_SIGNATURE_MISMATCH,
                        "Signature expired: %.16s is now earlier or later than %s (15 min. skew "
                        "allowed).",
                        http_header(req, "x-amz-date"), stamp);
    else
        *res = aws_fail(call, WIRE_SIGNATURE_MISMATCH,
                        "The request signature we calculated does not match the signature you "
                        "provided. Check your AWS Secret Access Key and signing method.");
    return false;
}

/* Answers SQS's RequestThrottled or SNS's Throttled with Retry-After, saying why. */
static enum handler_result throttle(struct aws_call *call, bool sns, int retry_after,
                                    const char *why)
{
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry_after > 0 ? retry_after : 1);
    http_add_header(call->req, "Retry-After", ra);
    return aws_fail(call, sns ? WIRE_SNS_THROTTLED : WIRE_THROTTLED,
                    "Rate exceeded: %s; retry after %s s.", why, ra);
}

/* Keeps the credentials *k found for the call (its handler does not look them up again). */
static enum store_result hold_key(struct aws_call *call, const struct aws_key *k)
{
    call->key = *k;
    call->key_held = true;
    return STORE_OK;
}

/* The credentials of access key key_id into *k: those the call holds, the process's cache (a
 * second old at most, so a deleted token's keys stop working within a second), then the
 * database, if the lookup is allowed (app_lookup_allowed) and may wait here (else it runs again
 * on another thread, http_admit_elsewhere: *res then). */
static enum store_result credentials(struct aws_call *call, const char *key_id, bool sns,
                                     struct aws_key *k, enum handler_result *res)
{
    struct http_request *req = call->req;
    struct app *app = req->app;
    uint64_t gen;
    if (call->key_held) { /* found with the headers */
        *k = call->key;
        return STORE_OK;
    }
    if (ttlcache_get(app->aws_key_cache, key_id, strlen(key_id), k, &gen))
        return hold_key(call, k);
    unsigned char peer[HTTP_PEER_KEY_MAX];
    size_t peer_len = http_peer_key(req, peer);
    int retry_after = 1;
    bool may_wait = http_may_wait(req), charged = false;
    enum app_lookup allowed = app_lookup_allowed(app, peer, peer_len, key_id, strlen(key_id),
                                                 &retry_after, may_wait ? &charged : NULL);
    if (allowed != APP_LOOKUP_OK) {
        *res = throttle(call, sns, retry_after,
                        allowed == APP_LOOKUP_ADDRESS_FAILING
                            ? "too many unknown credentials came from this address"
                            : "too many unknown credentials are being tried");
        return STORE_UNAVAILABLE;
    }
    if (!may_wait) { /* the lookup runs on another thread, the headers again there */
        *res = http_admit_elsewhere(req);
        return STORE_UNAVAILABLE;
    }
    struct db_conn *c = aws_db(call, res);
    if (!c)
        return STORE_UNAVAILABLE;
    enum store_result r = aws_credentials_lookup(c, key_id, k);
    aws_db_release(call, c);
    if (r == STORE_OK) /* only valid keys are cached: a miss always asks the database */
        ttlcache_put(app->aws_key_cache, key_id, strlen(key_id), k, gen);
    if (r == STORE_OK || r == STORE_NOT_FOUND)
        app_lookup_result(app, peer, peer_len, key_id, strlen(key_id), r == STORE_OK, charged);
    if (r != STORE_OK)
        *res = r == STORE_NOT_FOUND
                   ? aws_fail(call, WIRE_INVALID_CLIENT_TOKEN,
                              "The security token included in the request is invalid.")
                   : aws_fail(call, WIRE_UNAVAILABLE, "The credential store is unavailable.");
    return r == STORE_OK ? hold_key(call, k) : r;
}

/* The access key of the request's SigV4 Authorization header: the header parsed into *a and
 * the key's credentials into *k (wipe it). False with the error answered. */
static bool identify(struct aws_call *call, struct sigv4_auth *a, struct aws_key *k,
                     enum handler_result *res)
{
    const char *h = http_header(call->req, "Authorization");
    if (!h || !*h) {
        *res = aws_fail(call, WIRE_MISSING_AUTH,
                        "Request is missing Authentication Token: sign it with Signature "
                        "Version 4 and a key of 'rydes token create --aws'.");
        return false;
    }
    if (!sigv4_parse_authorization(h, a)) {
        *res = aws_fail(call, WIRE_INCOMPLETE_SIGNATURE,
                        "The Authorization header is not a well-formed AWS4-HMAC-SHA256 "
                        "signature (Credential, SignedHeaders, Signature).");
        return false;
    }
    if (strcmp(a->service, "sns") == 0) { /* its errors from here on in SNS's namespace */
        call->xmlns = AWS_SNS_XMLNS;
        call->json_ns = "com.amazonaws.sns";
    }
    /* a key that was never issued costs no pooled connection and no query */
    if (!aws_access_key_valid(a->access_key)) {
        *res = aws_fail(call, WIRE_INVALID_CLIENT_TOKEN,
                        "The security token included in the request is invalid.");
        return false;
    }
    return credentials(call, a->access_key, strcmp(a->service, "sns") == 0, k, res) == STORE_OK;
}

/* Authenticates the request by its SigV4 Authorization header; fills the call's role, key,
 * region and service, and token_hash with the SHA-256 of the key's bearer token (its rate
 * limit's key). False with the error answered. */
static bool authenticate(struct aws_call *call, struct sigv4_auth *a, unsigned char *token_hash,
                         enum handler_result *res)
{
    struct aws_key k;
    if (!identify(call, a, &k, res)) {
        OPENSSL_cleanse(&k, sizeof k);
        return false;
    }
    bool ok = verify(call, a, k.secret, res);
    call->role = k.role;
    memcpy(token_hash, k.token_hash, SECRET_HASH_LEN);
    OPENSSL_cleanse(&k, sizeof k);
    snprintf(call->region, sizeof call->region, "%s", a->region);
    snprintf(call->access_key, sizeof call->access_key, "%.20s", a->access_key);
    return ok;
}

/* Charges the request to the rate limit of the key's token (RYDES_RATE_LIMIT_*, the same bucket
 * as its bearer requests); answers SQS's RequestThrottled or SNS's Throttled with Retry-After. */
static bool rate_take(struct aws_call *call, const unsigned char *token_hash, bool sns,
                      enum handler_result *res)
{
    int retry_after = 1;
    unsigned char peer[HTTP_PEER_KEY_MAX];
    size_t peer_len = http_peer_key(call->req, peer);
    if (app_rate_take(call->req->app, token_hash, call->role, peer, peer_len, &retry_after))
        return true;
    *res = throttle(call, sns, retry_after,
                    "the token of this access key made more requests than its role's rate limit "
                    "allows");
    return false;
}

/* ---- input ---- */

/* The JSON protocol's input: the operation from X-Amz-Target, the body an object. */
static bool json_input(struct aws_call *call, const char *target, enum handler_result *res)
{
    const char *dot = strrchr(target, '.');
    if (strncmp(target, "AmazonSQS.", 10) != 0 || !dot || strlen(dot + 1) >= sizeof call->op) {
        *res = aws_fail(call, WIRE_UNKNOWN_OPERATION, "Unknown operation %.100s.", target);
        return false;
    }
    snprintf(call->op, sizeof call->op, "%s", dot + 1);
    struct buf *b = &call->req->body.buf;
    char detail[256];
    if (b->len && http_parsed_memory_full(call->req, b->len)) {
        http_add_header(call->req, "Retry-After", "1");
        *res = aws_fail(call, WIRE_UNAVAILABLE,
                        "The request bodies being handled take the memory allowed for them; "
                        "retry.");
        return false;
    }
    call->in =
        b->len ? body_parse_json(b->data, b->len, NULL, detail, sizeof detail) : json_object();
    if (b->len && call->in)
        http_charge_parsed(call->req, body_last_parse_cost());
    if (!json_is_object(call->in)) {
        *res = aws_fail(call, WIRE_MALFORMED, "The request body must be a JSON object%s%s.",
                        call->in ? "" : ": ", call->in ? "" : detail);
        return false;
    }
    return true;
}

/* The query protocol's input: Action and the flattened parameters of the form body. */
static bool query_input(struct aws_call *call, enum handler_result *res)
{
    struct wire_form f;
    char why[128];
    struct buf *b = &call->req->body.buf;
    if (!wire_form_parse(b->data ? b->data : "", b->len, &f, why, sizeof why)) {
        wire_form_cleanup(&f);
        *res = aws_fail(call, WIRE_MALFORMED, "The form body is malformed: %s.", why);
        return false;
    }
    const char *action = wire_form_get(&f, "Action");
    char bad[256];
    bool ok = action && *action && strlen(action) < sizeof call->op;
    if (ok) {
        snprintf(call->op, sizeof call->op, "%s", action);
        call->in = wire_query_to_json(&f, bad, sizeof bad);
    }
    bool sns = strcmp(call->xmlns, AWS_SNS_XMLNS) == 0;
    if (!ok)
        *res = aws_fail(call, WIRE_MISSING_ACTION, "The request must contain an Action.");
    else if (!call->in)
        *res = aws_fail(call, sns ? WIRE_SNS_INVALID_PARAMETER : WIRE_INVALID_PARAMETER, "%s%s",
                        sns ? "Invalid parameter: " : "", bad);
    wire_form_cleanup(&f);
    return ok && call->in;
}

static struct aws_call *call_new(struct http_request *req)
{
    struct aws_call *call = xcalloc(1, sizeof *call);
    call->req = req;
    req->state = call;
    req->state_free = call_free;
    const char *target = http_header(req, "X-Amz-Target");
    call->protocol = target ? AWS_PROTOCOL_JSON : AWS_PROTOCOL_QUERY;
    call->xmlns = AWS_SQS_XMLNS;
    call->json_ns = "com.amazonaws.sqs";
    call->path_queue = route_param(&req->match, "queue");
    snprintf(call->region, sizeof call->region, "us-east-1");
    return call;
}

enum handler_result aws_before_body(struct http_request *req)
{
    struct aws_call *call = req->state ? req->state : call_new(req); /* the second run's */
    struct sigv4_auth a;
    struct aws_key k;
    enum handler_result res = HANDLER_DONE;
    identify(call, &a, &k, &res);
    OPENSSL_cleanse(&k, sizeof k);
    return res;
}

enum handler_result aws_dispatch(struct http_request *req)
{
    struct aws_call *call = req->state ? req->state : call_new(req);
    struct sigv4_auth a;
    enum handler_result res;
    unsigned char token_hash[SECRET_HASH_LEN];
    if (!authenticate(call, &a, token_hash, &res))
        return res;
    bool sns = strcmp(a.service, "sns") == 0; /* (identify set the namespaces) */
    if (!rate_take(call, token_hash, sns, &res))
        return res;
    const char *target = http_header(req, "X-Amz-Target");
    bool ok = target ? json_input(call, target, &res) : query_input(call, &res);
    if (!ok)
        return res;
    if (sns && call->protocol == AWS_PROTOCOL_QUERY && !call->path_queue)
        return aws_sns_query(call);
    if (strcmp(a.service, "sqs") != 0 || sns)
        return aws_fail(call, WIRE_INVALID_ACTION,
                        "The service '%.32s' of the signature's scope is not served here.",
                        a.service);
    return aws_sqs(call);
}
