/* The token store: API tokens in table tokens, looked up by the SHA-256 of their secret. */
#ifndef RYDES_TOKENS_H
#define RYDES_TOKENS_H

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/ids.h"
#include "rydes/role.h"
#include "rydes/secret.h"

#include <stdbool.h>

/* Outcome of a store operation: UNAVAILABLE means the database went away (503), ERROR that it
 * refused the statement (a bug: 500). */
enum store_result { STORE_OK, STORE_NOT_FOUND, STORE_UNAVAILABLE, STORE_ERROR };

struct token_info {
    char id[IDS_UUID_LEN];
    long long seq;
    char name[404]; /* up to 100 code points of UTF-8 */
    enum role role;
    char created_at[CLOCK_RFC3339_LEN];
};

/* Creates a token; the fresh secret is written to secret (SECRET_TOKEN_LEN bytes). */
enum store_result tokens_create(struct db_conn *c, enum role role, const char *name, char *secret,
                                struct token_info *out);
/* Makes secret the bootstrap admin token (RYDES_ADMIN_TOKEN), revoking a previous one.
 * STORE_NOT_FOUND, changing nothing, when secret is that of a token made otherwise (or one an
 * earlier version made the bootstrap token that way: it kept its own name). */
enum store_result tokens_ensure_admin(struct db_conn *c, const char *secret);
/* Finds the role of the token whose secret is given. */
enum store_result tokens_authenticate(struct db_conn *c, const char *secret, enum role *role);
enum store_result tokens_get(struct db_conn *c, const char *id, struct token_info *out);
enum store_result tokens_delete(struct db_conn *c, const char *id);
/* Lists up to limit tokens with seq > after, in seq order. *items is allocated (caller frees);
 * *more tells whether further tokens follow. */
enum store_result tokens_list(struct db_conn *c, long long after, int limit,
                              struct token_info **items, int *count, bool *more);

#endif
