/* AWS Signature Version 4; see include/rydes/sigv4.h.
 *
 * The server recomputes the signature the client computed: the canonical request (method,
 * canonical URI, canonical query, the signed headers trimmed and lowercased, the SHA-256 of the
 * body as received), the string to sign over its hash, and the HMAC chain of the secret over
 * date, region, service and "aws4_request". Only the comparison of the two signatures has to be
 * constant-time; everything else depends on public inputs. */
#include "rydes/sigv4.h"

#include "rydes/mem.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void to_hex(const unsigned char *md, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

static void hmac(const void *key, size_t key_len, const void *data, size_t n, unsigned char *out)
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)key_len, data, n, out, &len);
}

void sigv4_sha256_hex(const void *data, size_t n, char *hex)
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    to_hex(md, 32, hex);
}

void sigv4_hmac_hex(const unsigned char key[32], const char *data, size_t n, char *hex)
{
    unsigned char md[32];
    hmac(key, 32, data, n, md);
    to_hex(md, 32, hex);
}

bool sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char key[32])
{
    char k[4 + SIGV4_MAX_SECRET + 1];
    size_t n = strlen(secret);
    if (n > SIGV4_MAX_SECRET) {
        memset(key, 0, 32);
        return false;
    }
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret, n);
    unsigned char a[32], b[32], d[32];
    hmac(k, 4 + n, date, strlen(date), a);
    hmac(a, 32, region, strlen(region), b);
    hmac(b, 32, service, strlen(service), d);
    hmac(d, 32, "aws4_request", 12, key);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    OPENSSL_cleanse(d, sizeof d);
    return true;
}

/* Copies the text after "name=" up to a comma (or the end) into out. */
static bool auth_part(const char *h, const char *name, char *out, size_t n)
{
    const char *p = strstr(h, name);
    if (!p)
        return false;
    p += strlen(name);
    size_t len = strcspn(p, ", ");
    if (len == 0 || len >= n)
        return false;
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

/* Splits "AK/DATE/REGION/SERVICE/aws4_request" into a. */
static bool split_credential(const char *cred, struct sigv4_auth *a)
{
    char *parts[5];
    char copy[512];
    snprintf(copy, sizeof copy, "%s", cred);
    char *save = NULL, *p = copy;
    int n = 0;
    for (char *t; n < 5 && (t = strtok_r(p, "/", &save)); p = NULL)
        parts[n++] = t;
    if (n != 5 || strtok_r(NULL, "/", &save) || strcmp(parts[4], "aws4_request") != 0 ||
        strlen(parts[1]) != 8 || strlen(parts[0]) >= sizeof a->access_key ||
        strlen(parts[2]) >= sizeof a->region || strlen(parts[3]) >= sizeof a->service)
        return false;
    strcpy(a->access_key, parts[0]);
    strcpy(a->date, parts[1]);
    strcpy(a->region, parts[2]);
    strcpy(a->service, parts[3]);
    return true;
}

/* Is s 1..max of the characters in allowed? */
static bool only(const char *s, const char *allowed, size_t max)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max && strspn(s, allowed) == n;
}

/* Does the ";"-separated list signed name the header name? */
static bool is_signed(const char *signed_headers, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = signed_headers; *p;) {
        size_t len = strcspn(p, ";");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ';');
    }
    return false;
}

bool sigv4_parse_authorization(const char *h, struct sigv4_auth *out)
{
    static const char scheme[] = "AWS4-HMAC-SHA256 ";
    memset(out, 0, sizeof *out);
    if (!h || strncmp(h, scheme, sizeof scheme - 1) != 0)
        return false;
    h += sizeof scheme - 1;
    char cred[512];
    if (!auth_part(h, "Credential=", cred, sizeof cred) || !split_credential(cred, out) ||
        !auth_part(h, "SignedHeaders=", out->signed_headers, sizeof out->signed_headers) ||
        !auth_part(h, "Signature=", out->signature, sizeof out->signature))
        return false;
    if (strlen(out->signature) != 64)
        return false;
    /* the scope is echoed into ARNs and replies: plain names only; the signature must cover
     * the host and the date, or a captured request could be replayed elsewhere */
    if (!only(out->region, "abcdefghijklmnopqrstuvwxyz0123456789-", 32) ||
        !only(out->service, "abcdefghijklmnopqrstuvwxyz0123456789", 32) ||
        !only(out->signed_headers, "abcdefghijklmnopqrstuvwxyz0123456789-;", 1023) ||
        !is_signed(out->signed_headers, "host") || !is_signed(out->signed_headers, "x-amz-date"))
        return false;
    for (const char *s = out->signature; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return false;
    return true;
}

bool sigv4_parse_amz_date(const char *s, int64_t *epoch_s)
{
    struct tm tm = {0};
    if (!s || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)s[i]))
            return false;
    if (sscanf(s, "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6 ||
        tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int mday = tm.tm_mday, mon = tm.tm_mon;
    *epoch_s = (int64_t)timegm(&tm);
    return tm.tm_mday == mday && tm.tm_mon == mon; /* not a day the month lacks (Feb 31) */
}

/* s URI-encoded as SigV4 asks: every byte but the unreserved ones and those of keep
 * percent-encoded. */
static void uri_encode(const char *s, const char *keep, struct buf *out)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || strchr("-_.~", *p) || strchr(keep, *p))
            buf_append(out, p, 1);
        else
            buf_printf(out, "%%%02X", *p);
    }
}

/* The canonical URI: every byte but the unreserved ones and '/' percent-encoded. */
static void canonical_uri(const char *path, struct buf *out)
{
    if (!*path)
        buf_puts(out, "/");
    uri_encode(path, "/", out);
}

struct query_pair {
    char *name, *value; /* encoded */
};

static int pair_cmp(const void *a, const void *b)
{
    const struct query_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

void sigv4_canonical_query(const char *const *names, const char *const *values, size_t n,
                           struct buf *out)
{
    struct query_pair *pairs = n ? xcalloc(n, sizeof *pairs) : NULL;
    for (size_t i = 0; i < n; i++) {
        struct buf b;
        buf_init(&b);
        uri_encode(names[i], "", &b);
        pairs[i].name = xstrdup(buf_str(&b));
        buf_reset(&b);
        uri_encode(values[i] ? values[i] : "", "", &b);
        pairs[i].value = xstrdup(buf_str(&b));
        buf_cleanup(&b);
    }
    if (n)
        qsort(pairs, n, sizeof *pairs, pair_cmp);
    for (size_t i = 0; i < n; i++) {
        buf_printf(out, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
}

/* A header value trimmed, with runs of spaces collapsed to one. */
static void canonical_value(const char *v, struct buf *out)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            buf_puts(out, " ");
        space = false;
        buf_append(out, v, 1);
    }
}

void sigv4_canonical_request(const struct sigv4_request *r, const char *signed_headers,
                             struct buf *out)
{
    buf_printf(out, "%s\n", r->method);
    canonical_uri(r->path, out);
    buf_printf(out, "\n%s\n", r->query);
    const char *p = signed_headers;
    while (*p) {
        size_t n = strcspn(p, ";");
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        const char *v = r->header(r->header_ctx, name);
        buf_printf(out, "%s:", name);
        canonical_value(v ? v : "", out);
        buf_puts(out, "\n");
        p += n + (p[n] == ';');
    }
    char hash[65];
    sigv4_sha256_hex(r->body, r->body_len, hash);
    buf_printf(out, "\n%s\n%s", signed_headers, hash);
}

void sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical,
                          struct buf *out)
{
    char hash[65];
    sigv4_sha256_hex(canonical, strlen(canonical), hash);
    buf_printf(out, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, hash);
}

enum sigv4_result sigv4_verify(const struct sigv4_request *r, const struct sigv4_auth *a,
                               const char *secret, int64_t now_s)
{
    const char *date = r->header(r->header_ctx, "x-amz-date");
    int64_t when;
    if (!date || !sigv4_parse_amz_date(date, &when))
        return SIGV4_NO_DATE;
    if (when > now_s + SIGV4_MAX_SKEW_S || when < now_s - SIGV4_MAX_SKEW_S)
        return SIGV4_SKEWED;
    if (strncmp(date, a->date, 8) != 0)
        return SIGV4_MISMATCH;
    /* an operation named by X-Amz-Target must be signed too (it chooses what the body does) */
    if (r->header(r->header_ctx, "x-amz-target") && !is_signed(a->signed_headers, "x-amz-target"))
        return SIGV4_MISMATCH;
    for (const char *p = a->signed_headers; *p;) { /* every signed header must be there */
        size_t n = strcspn(p, ";");
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        if (!r->header(r->header_ctx, name))
            return SIGV4_MISMATCH;
        p += n + (p[n] == ';');
    }
    struct buf canonical, sts;
    buf_init(&canonical);
    buf_init(&sts);
    sigv4_canonical_request(r, a->signed_headers, &canonical);
    char scope[128];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", a->date, a->region, a->service);
    sigv4_string_to_sign(date, scope, buf_str(&canonical), &sts);
    unsigned char key[32];
    bool keyed = sigv4_signing_key(secret, a->date, a->region, a->service, key);
    char sig[65];
    sigv4_hmac_hex(key, buf_str(&sts), sts.len, sig);
    OPENSSL_cleanse(key, sizeof key);
    char given[65];
    for (int i = 0; i < 65; i++)
        given[i] = (char)tolower((unsigned char)a->signature[i]);
    bool ok = keyed && CRYPTO_memcmp(sig, given, 64) == 0;
    buf_cleanup(&canonical);
    buf_cleanup(&sts);
    return ok ? SIGV4_OK : SIGV4_MISMATCH;
}
