/* The payment gateway implementations; see include/rydes/payments.h. */
#include "rydes/payments.h"

#include "rydes/ids.h"
#include "rydes/jsontext.h"
#include "rydes/mem.h"
#include "rydes/validate.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAY_HTTP_TIMEOUT_MS 10000L
#define PAY_HTTP_MAX_REPLY  65536

struct payments {
    char *base_url; /* NULL: the simulator */
    long timeout_ms;
};

static const char *const op_names[] = {"preauth", "void", "charge", "refund", "credit"};
static const char *const op_paths[] = {"preauthorizations", "voids", "charges", "refunds",
                                       "credits"};
/* The simulator's failure markers, per operation (NULL: none): declined, and done with the
 * answer lost. */
static const char *const op_failures[] = {"_fail_auth", NULL, "_fail_charge", "_fail_refund",
                                          "_fail_credit"};
static const char *const op_losses[] = {"_lost_auth", NULL, "_lost_charge", NULL, "_lost_credit"};

const char *payments_op_name(enum pay_op op)
{
    return op_names[op];
}

struct payments *payments_simulator(void)
{
    return xcalloc(1, sizeof(struct payments));
}

struct payments *payments_http(const char *base_url, long timeout_ms)
{
    struct payments *p = xcalloc(1, sizeof *p);
    p->base_url = xstrdup(base_url);
    size_t n = strlen(p->base_url);
    while (n && p->base_url[n - 1] == '/') /* "https://pay.example/" + "/charges" */
        p->base_url[--n] = '\0';
    p->timeout_ms = timeout_ms < PAY_HTTP_TIMEOUT_MS ? timeout_ms : PAY_HTTP_TIMEOUT_MS;
    if (p->timeout_ms < 100)
        p->timeout_ms = 100;
    return p;
}

void payments_free(struct payments *p)
{
    if (!p)
        return;
    free(p->base_url);
    free(p);
}

/* Runs stmt with v; the first value of the first row into out (may be NULL), or false. */
static bool query(struct db_conn *c, struct db_stmt *stmt, const char *const *v, char *out,
                  size_t len, bool *found)
{
    PGresult *r = db_exec(c, stmt, v, NULL, NULL);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    *found = ok && st == PGRES_TUPLES_OK && PQntuples(r) > 0;
    if (*found && out)
        snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok;
}

static struct db_stmt q_put_once =
    DB_STMT("payments_put_once",
            "WITH i AS (INSERT INTO payment_ledger (idempotency_key, fare_id, kind, customer, "
            "amount, reference) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) "
            "DO NOTHING RETURNING kind || ':' || reference) SELECT * FROM i UNION ALL "
            "SELECT kind || ':' || reference FROM payment_ledger WHERE idempotency_key = $1 "
            "AND NOT EXISTS (SELECT 1 FROM i)",
            6);

/* Puts a row of kind under key for rq, unless the key has one: *kept receives the key's row as
 * "kind:reference". False when the ledger could not be reached (out->detail says so). */
static bool put_once(struct db_conn *c, const char *key, const char *kind,
                     const struct pay_request *rq, const char *reference, char *kept, size_t len,
                     struct pay_result *out)
{
    char amount[32];
    snprintf(amount, sizeof amount, "%.2f", rq->amount);
    const char *v[] = {key, rq->fare_id, kind, rq->customer, amount, reference};
    bool found;
    /* twice: a run writing the same key concurrently (after a lease takeover) makes the insert
     * wait and find the conflict, while the statement's snapshot still misses that row */
    for (int i = 0; i < 2; i++)
        if (query(c, &q_put_once, v, kept, len, &found) && found)
            return true;
    snprintf(out->detail, sizeof out->detail, "the simulator's ledger is unavailable");
    return false;
}

/* Records op for rq in the ledger (once per key) and returns what the key stands for. */
static enum pay_status ledger(struct db_conn *c, const char *kind, const struct pay_request *rq,
                              const char *reference, struct pay_result *out)
{
    char kept[80];
    if (!put_once(c, rq->key, kind, rq, reference, kept, sizeof kept, out))
        return PAY_TRANSIENT;
    const char *colon = strchr(kept, ':');
    snprintf(out->reference, sizeof out->reference, "%s", colon ? colon + 1 : "");
    if (strncmp(kept, "declined:", 9) == 0 || strncmp(kept, "cancelled:", 10) == 0) {
        snprintf(out->detail, sizeof out->detail, "%s by the payment simulator",
                 kept[0] == 'd' ? "declined" : "cancelled earlier");
        return PAY_DECLINED;
    }
    return PAY_OK;
}

/* An undo (void, refund) of the call with rq->original_key, whose answer was lost: the ledger
 * row of that key, or a 'cancelled' row put there now so that the call is refused should it
 * still arrive. *undo: there is something to undo. */
static enum pay_status original(struct db_conn *c, const struct pay_request *rq, bool *undo,
                                struct pay_result *out)
{
    char kept[80];
    if (!put_once(c, rq->original_key, "cancelled", rq, "", kept, sizeof kept, out))
        return PAY_TRANSIENT;
    char *colon = strchr(kept, ':');
    if (colon)
        *colon = '\0'; /* the kind */
    *undo = strcmp(kept, "preauth") == 0 || strcmp(kept, "charge") == 0;
    if (!*undo)
        snprintf(out->detail, sizeof out->detail, "nothing to undo: %s did not take effect (%s)",
                 rq->original_key, strcmp(kept, "cancelled") == 0 ? "cancelled now" : kept);
    return PAY_OK;
}

static struct db_stmt q_flaky =
    DB_STMT("payments_flaky",
            "INSERT INTO payment_ledger (idempotency_key, fare_id, kind, customer, amount, "
            "reference) VALUES ($1, $2, 'transient', $3, 0, '') "
            "ON CONFLICT DO NOTHING RETURNING 1",
            3);

static enum pay_status simulate(struct db_conn *c, enum pay_op op, const struct pay_request *rq,
                                struct pay_result *out)
{
    /* _flaky: the first call with each key fails (a marker row remembers it did) */
    if (strstr(rq->customer, "_flaky")) {
        char key[300];
        snprintf(key, sizeof key, "%s:flaky", rq->key);
        const char *v[] = {key, rq->fare_id, rq->customer};
        bool inserted;
        if (!query(c, &q_flaky, v, NULL, 0, &inserted) || inserted) {
            snprintf(out->detail, sizeof out->detail, "simulated timeout (flaky customer)");
            return PAY_TRANSIENT;
        }
    }
    if (rq->original_key) {
        bool undo;
        enum pay_status st = original(c, rq, &undo, out);
        if (st != PAY_OK || !undo)
            return st;
    }
    const char *marker = op_failures[op];
    if (marker && strstr(rq->customer, marker))
        return ledger(c, "declined", rq, "", out);
    char reference[40];
    ids_uuid(reference);
    enum pay_status st = ledger(c, op_names[op], rq, reference, out);
    if (st == PAY_OK && op_losses[op] && strstr(rq->customer, op_losses[op])) {
        snprintf(out->detail, sizeof out->detail, "simulated timeout after the %s went through",
                 op_names[op]);
        return PAY_TRANSIENT;
    }
    return st;
}

struct reply {
    char *data;
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t add = size * n;
    if (r->len + add > PAY_HTTP_MAX_REPLY)
        return 0; /* an absurd reply: abort the transfer */
    r->data = xrealloc(r->data, r->len + add + 1);
    memcpy(r->data + r->len, p, add);
    r->len += add;
    r->data[r->len] = '\0';
    return add;
}

/* Does ref fit a reference buffer of n bytes whole, as printable ASCII (the references
 * gateways hand back are opaque tokens)? */
static bool reference_fits(const char *ref, size_t n)
{
    size_t len = strlen(ref);
    return len < n && validate_printable_ascii(ref, len);
}

/* A 2xx answer: a JSON object, with, for the calls whose reference later calls name (a
 * pre-authorization, a charge), a reference kept whole (a string of printable ASCII that fits,
 * or an integer); a void's, refund's or credit's may also be empty. Anything else (a
 * maintenance page served with 200, a reference cut short or missing) is no answer: the call's
 * outcome stays unknown, and it is undone by its key. */
static enum pay_status success(enum pay_op op, const char *body, json_t *reply,
                               struct pay_result *out)
{
    json_t *j = json_object_get(reply, "reference");
    char number[32];
    const char *ref = json_string_value(j);
    if (json_is_integer(j)) {
        snprintf(number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        ref = number;
    }
    bool kept = ref && *ref && reference_fits(ref, sizeof out->reference);
    if (kept)
        snprintf(out->reference, sizeof out->reference, "%s", ref);
    bool needs_ref = op == PAY_PREAUTH || op == PAY_CHARGE;
    /* a void's, refund's or credit's 2xx may be empty (204, or 200 without a body) */
    bool empty = !body || !body[strspn(body, " \t\r\n")];
    const char *why = empty && !needs_ref      ? NULL
                      : !json_is_object(reply) ? "an answer that is not a JSON object"
                      : kept || !needs_ref
                          ? NULL
                          : "no reference that is printable ASCII and short enough";
    if (!why)
        return PAY_OK;
    size_t len = strlen(out->detail);
    snprintf(out->detail + len, sizeof out->detail - len, ", with %s", why);
    out->reference[0] = '\0';
    return PAY_TRANSIENT;
}

/* Anything but a 2xx: only a 4xx declines; 408, 429 and 409/425 (a call with this key still in
 * progress there) are no answer for the call, and neither is a 1xx, a 3xx (redirects are not
 * followed: a maintenance page or a scheme change in front of the gateway), any 5xx or a
 * transfer that failed. */
static enum pay_status failure(CURLcode rc, long status, struct pay_result *out)
{
    bool declined = rc == CURLE_OK && status >= 400 && status < 500 && status != 408 &&
                    status != 409 && status != 425 && status != 429;
    out->foreign = declined && status != 402; /* 402: the gateway's own decline of the call */
    return declined ? PAY_DECLINED : PAY_TRANSIENT;
}

/* Sends op to the real gateway. */
static enum pay_status over_http(struct payments *p, enum pay_op op, const struct pay_request *rq,
                                 struct pay_result *out)
{
    char url[1200], key[320];
    snprintf(url, sizeof url, "%s/%s", p->base_url, op_paths[op]);
    snprintf(key, sizeof key, "Idempotency-Key: %s", rq->key);
    json_t *body = json_pack("{s:s, s:s, s:f, s:s?}", "fare_id", rq->fare_id, "customer",
                             rq->customer, "amount", rq->amount, "reference", rq->reference);
    if (rq->original_key) /* only in an undo by key */
        json_object_set_new(body, "original_idempotency_key", json_string(rq->original_key));
    char *text = jsontext_dumps(body, JSON_COMPACT);
    json_decref(body);
    CURL *h = curl_easy_init();
    if (!h)
        rydes_oom();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, key);
    struct reply r = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    CURLcode rc = curl_easy_perform(h);
    long status = 0, sent = 0;
    curl_off_t pretransfer_us = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
    curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(text);
    json_t *reply = r.data ? json_loads(r.data, 0, NULL) : NULL;
    snprintf(out->detail, sizeof out->detail, "%s at the payment gateway: %s (HTTP %ld)",
             op_names[op], rc != CURLE_OK ? curl_easy_strerror(rc) : "answered", status);
    /* the request phase never began and no byte of it left: a refused or black-holed
     * connection, a failed name lookup or TLS handshake (it cannot have reached the gateway) */
    out->unsent = rc != CURLE_OK && sent == 0 && pretransfer_us == 0;
    enum pay_status st = rc == CURLE_OK && status >= 200 && status < 300
                             ? success(op, r.data, reply, out)
                             : failure(rc, status, out);
    json_decref(reply);
    free(r.data);
    return st;
}

enum pay_status payments_call(struct payments *p, struct db_conn *c, enum pay_op op,
                              const struct pay_request *rq, struct pay_result *out)
{
    memset(out, 0, sizeof *out);
    return p->base_url ? over_http(p, op, rq, out) : simulate(c, op, rq, out);
}
