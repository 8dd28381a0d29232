/* Token secrets and digests over OpenSSL's EVP interface; see include/rydes/secret.h. */
#include "rydes/secret.h"

#include "rydes/ids.h"
#include "rydes/mem.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
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
}

static void digest(const EVP_MD *md, const void *data, size_t n, unsigned char *out)
{
    unsigned int outlen = 0;
    if (!EVP_Digest(data, n, out, &outlen, md, NULL))
        rydes_oom(); /* EVP_Digest only fails on allocation failure */
}

void secret_token_hash(const char *token, size_t len, unsigned char *out)
{
    digest(EVP_sha256(), token, len, out);
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
    digest(EVP_sha256(), data, n, md);
    hex(md, 32, out);
}

void secret_md5_hex(const void *data, size_t n, char *out)
{
    unsigned char md[16];
    digest(EVP_md5(), data, n, md);
    hex(md, 16, out);
}
