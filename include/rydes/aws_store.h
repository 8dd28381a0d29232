/* The AWS tables of sql/011_aws.sql: SigV4 access keys issued for tokens, SQS queue tags, the
 * dead-letter sources of a queue, and the subscriptions of every topic for SNS's listings. Plain
 * parameterized statements on a pooled connection the caller owns; the secret of a key is read here
 * and never logged anywhere. */
#ifndef RYDES_AWS_STORE_H
#define RYDES_AWS_STORE_H

#include "rydes/db.h"
#include "rydes/role.h"
#include "rydes/secret.h"
#include "rydes/tokens.h"

#include <jansson.h>
#include <stdbool.h>

#define AWS_ACCESS_KEY_LEN 21 /* "AKID" + 16 of [A-Z2-7], and the NUL */
#define AWS_SECRET_LEN     41 /* 40 characters of base64, and the NUL */

/* What an access key stands for. Holds the secret: wipe it (OPENSSL_cleanse) after use. */
struct aws_key {
    char secret[AWS_SECRET_LEN];
    enum role role;                            /* of its token */
    unsigned char token_hash[SECRET_HASH_LEN]; /* its token's SHA-256 (tokens.secret_hash) */
};

/* Issues a new access key for token token_id into key_id and secret. */
enum store_result aws_credentials_create(struct db_conn *c, const char *token_id, char *key_id,
                                         char *secret);
/* Is key_id of the form aws_credentials_create issues ("AKID" + 16 of [A-Z2-7])? Checked before
 * any lookup, so that a made-up key costs no query. */
bool aws_access_key_valid(const char *key_id);
/* Finds the secret, the token's role and the token's hash of access key key_id. */
enum store_result aws_credentials_lookup(struct db_conn *c, const char *key_id,
                                         struct aws_key *out);

/* The tags of queue queue_id as a new JSON object {key: value} (caller releases). */
enum store_result aws_tags_get(struct db_conn *c, int queue_id, json_t **tags);
/* Sets (adds or replaces) the tags of object tags {key: value-string} in one statement. */
enum store_result aws_tags_put(struct db_conn *c, int queue_id, json_t *tags);
/* Removes the keys of array keys (strings). */
enum store_result aws_tags_remove(struct db_conn *c, int queue_id, json_t *keys);

/* Names of the queues dead-lettering into queue_id, after name after ("" from the start), at
 * most limit; *names is a new JSON array of strings (caller releases); *more if others follow. */
enum store_result aws_dead_letter_sources(struct db_conn *c, int queue_id, const char *after,
                                          int limit, json_t **names, bool *more);

/* Subscriptions (for SNS's listings) of topic topic, or of every topic when topic is NULL, after
 * (after_topic, after_name) in (topic, name) order ("", "" from the start), at most limit;
 * *rows is a new JSON array of {topic, name, queue, url} ("" for the one a subscription lacks;
 * caller releases); *more if others follow. */
enum store_result aws_subscriptions_list(struct db_conn *c, const char *topic,
                                         const char *after_topic, const char *after_name, int limit,
                                         json_t **rows, bool *more);

#endif
