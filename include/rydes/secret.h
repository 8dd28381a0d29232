/* Bearer-token secrets: generation, hashing for storage, constant-time comparison. Tokens carry
 * 256 random bits, so a plain SHA-256 is a sufficient storage hash (no salt or stretching is
 * needed for secrets that cannot be guessed); only the hash ever reaches the database. */
#ifndef RYDES_SECRET_H
#define RYDES_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#define SECRET_TOKEN_PREFIX "rydes_"
#define SECRET_TOKEN_LEN    (6 + 43 + 1) /* prefix, 32 bytes in base64url, NUL */
#define SECRET_HASH_LEN     32
#define SECRET_TOKEN_MAX    512 /* longest bearer token we even look at */

/* Writes a fresh token ("rydes_" + 43 base64url characters) into out (SECRET_TOKEN_LEN). */
void secret_token_generate(char *out);
/* SHA-256 of the token's bytes into out (SECRET_HASH_LEN bytes). */
void secret_token_hash(const char *token, size_t len, unsigned char *out);
/* Compares n bytes in time independent of where they differ. */
bool secret_equal(const void *a, const void *b, size_t n);
/* Hex SHA-256 of data into out (65 bytes): content-based deduplication ids. */
void secret_sha256_hex(const void *data, size_t n, char *out);
/* Hex MD5 of data into out (33 bytes), as SQS's md5_of_body. */
void secret_md5_hex(const void *data, size_t n, char *out);

#endif
