/* AWS Signature Version 4 for requests signed in the Authorization header: parsing the header,
 * the canonical request, the string to sign, the signing key and the signature, and a verify
 * step that compares in constant time and refuses a clock skew over 15 minutes. Pure: no I/O;
 * the caller supplies the secret of the access key and a header lookup. Unit-tested against
 * the example of the AWS documentation (tests/unit/test_sigv4.c). */
#ifndef RYDES_SIGV4_H
#define RYDES_SIGV4_H

#include "rydes/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGV4_MAX_SKEW_S (15 * 60)
#define SIGV4_MAX_SECRET 128 /* longest secret access key signed with (Rydes issues 40) */

struct sigv4_auth {
    char access_key[129];
    char date[9]; /* YYYYMMDD of the credential scope */
    char region[33];
    char service[33];
    char signed_headers[1024]; /* "host;x-amz-date" as signed, lowercase */
    char signature[65];        /* lowercase hex */
};

/* Parses "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request, SignedHeaders=...,
 * Signature=...". False when anything is missing or malformed. */
bool sigv4_parse_authorization(const char *header, struct sigv4_auth *out);

/* Parses an X-Amz-Date value ("20150830T123600Z") into seconds since the epoch. */
bool sigv4_parse_amz_date(const char *s, int64_t *epoch_s);

/* A header value of the request by lowercase name, or NULL. */
typedef const char *(*sigv4_header_fn)(void *ctx, const char *name);

struct sigv4_request {
    const char *method;
    const char *path;  /* decoded path; encoded here as the canonical URI */
    const char *query; /* canonical query string, "" for none */
    sigv4_header_fn header;
    void *header_ctx;
    const void *body;
    size_t body_len;
};

/* Appends the canonical query string of n decoded names and values (a NULL value is empty) to
 * out: each URI-encoded (RFC 3986: spaces as %20), sorted by name, then value, joined by "&". */
void sigv4_canonical_query(const char *const *names, const char *const *values, size_t n,
                           struct buf *out);

/* Appends the canonical request of r for the signed headers (";"-separated) to out. */
void sigv4_canonical_request(const struct sigv4_request *r, const char *signed_headers,
                             struct buf *out);
/* Appends the string to sign for amz_date ("20150830T123600Z") and scope
 * ("20150830/us-east-1/iam/aws4_request") to out. */
void sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical,
                          struct buf *out);
/* The signing key (32 bytes) of secret for date, region and service; false (and a key of
 * zeros) for a secret longer than SIGV4_MAX_SECRET. The intermediate keys are wiped. */
bool sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char key[32]);
/* The lowercase hex HMAC-SHA256 of data under key (hex: 65 bytes). */
void sigv4_hmac_hex(const unsigned char key[32], const char *data, size_t n, char *hex);
/* Lowercase hex SHA-256 of data (hex: 65 bytes). */
void sigv4_sha256_hex(const void *data, size_t n, char *hex);

enum sigv4_result {
    SIGV4_OK,
    SIGV4_NO_DATE,  /* no X-Amz-Date header, or a malformed one */
    SIGV4_SKEWED,   /* the date is more than 15 minutes from now */
    SIGV4_MISMATCH, /* the signature (or the scope's date) does not match */
};

/* Verifies the request r signed as a says with secret, at now_s (seconds since the epoch). */
enum sigv4_result sigv4_verify(const struct sigv4_request *r, const struct sigv4_auth *a,
                               const char *secret, int64_t now_s);

#endif
