/* Token secrets and digests over OpenSSL's EVP interface; see include/rydes/secret.h. */
#include "rydes/secret.h"

#include "rydes/ids.h"
#include "rydes/log.h"
#include "rydes/mem.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void secret_token_generate(char *out)
{
    unsigned char raw[33]; /* 32 random bytes; the 33rd pads the last 6-bit group */
    ids_random(raw, 32);
    raw[32] = 0;
    char *p = out + sizeof SECRET_TOKEN_PREFIX - 1;
    memcpy(out, SECRET_TOKEN_PREFIX, sizeof SECRET_TOKEN_PREFIX - 1);
    for (int i = 0; i < 33; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        *p++ = b64url[(v >> 18) & 63];
        *p++ = b64url[(v >> 12) & 63];
        *p++ = b64url[(v >> 6) & 63];
        *p++ = b64url[v & 63];
    }
    out[SECRET_TOKEN_LEN - 1] = '\0'; /* 43 characters carry the 256 bits */
    OPENSSL_cleanse(raw, sizeof raw);  /* the caller's copy is the only one left */
}

/* The digests, fetched from OpenSSL's default provider once per process: EVP_sha256() and
 * EVP_md5() are legacy handles that OpenSSL 3 looks up by name on every use (callgrind: 4,000
 * of the gateway's 114,000 instructions per send). They live as long as the process. */
static EVP_MD *md_sha256, *md_md5;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void fetch_digests(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    if (!md_sha256 || !md_md5) {
        log_error("OpenSSL has no SHA-256 or MD5 in its default provider");
        abort();
    }
}

enum digest_kind { DIGEST_SHA256, DIGEST_MD5 };

static void digest(enum digest_kind kind, const void *data, size_t n, unsigned char *out)
{
    pthread_once(&md_once, fetch_digests);
    unsigned int outlen = 0;
    if (!EVP_Digest(data, n, out, &outlen, kind == DIGEST_MD5 ? md_md5 : md_sha256, NULL))
        rydes_oom(); /* EVP_Digest only fails on allocation failure */
}

void secret_token_hash(const char *token, size_t len, unsigned char *out)
{
    digest(DIGEST_SHA256, token, len, out);
}

bool secret_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

static void hex(const unsigned char *md, int n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

void secret_sha256_hex(const void *data, size_t n, char *out)
{
    unsigned char md[32];
    digest(DIGEST_SHA256, data, n, md);
    hex(md, 32, out);
}

void secret_md5_hex(const void *data, size_t n, char *out)
{
    unsigned char md[16];
    digest(DIGEST_MD5, data, n, md);
    hex(md, 16, out);
}
