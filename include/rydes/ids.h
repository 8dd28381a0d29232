/* Identifiers: random bytes from the kernel, UUID strings (random v4, time-ordered v7), request
 * ids. */
#ifndef RYDES_IDS_H
#define RYDES_IDS_H

#include <stdbool.h>
#include <stddef.h>

#define IDS_UUID_LEN       37 /* 36 characters and the NUL */
#define IDS_REQUEST_ID_MAX 128

/* Fills out with n cryptographically random bytes (getrandom). Aborts if the kernel refuses. */
void ids_random(void *out, size_t n);
/* Writes a random (version 4) UUID, lower-case, into out (IDS_UUID_LEN bytes). */
void ids_uuid(char *out);
/* Writes a time-ordered (version 7, RFC 9562) UUID into out (IDS_UUID_LEN bytes): 48 bits of
 * Unix milliseconds, then 74 random bits. For primary keys: new rows go to the right edge of
 * the index instead of a random leaf page. */
void ids_uuid_v7(char *out);
/* Is s a well-formed UUID (any version, either case)? */
bool ids_is_uuid(const char *s);
/* Is s acceptable as a client-supplied X-Request-Id: 1..128 of [A-Za-z0-9._:-]? */
bool ids_request_id_valid(const char *s);

#endif
