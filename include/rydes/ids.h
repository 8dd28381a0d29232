/* Identifiers: random bytes from the kernel, UUIDv4 strings, and request ids. */
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
/* Is s a well-formed UUID (any version, either case)? */
bool ids_is_uuid(const char *s);
/* Is s acceptable as a client-supplied X-Request-Id: 1..128 of [A-Za-z0-9._:-]? */
bool ids_request_id_valid(const char *s);

#endif
