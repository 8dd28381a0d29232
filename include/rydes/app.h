/* The application: composes configuration, the database pool, migrations, the HTTP server and
 * its routes into one running gateway. Used by `rydes serve` and, in-process, by the
 * integration tests, so both run exactly the same start-up and shutdown. */
#ifndef RYDES_APP_H
#define RYDES_APP_H

#include "rydes/config.h"
#include "rydes/db.h"
#include "rydes/http.h"
#include "rydes/metrics.h"
#include "rydes/mq_hub.h"
#include "rydes/mq_push.h"
#include "rydes/mq_sweeper.h"
#include "rydes/ratelimit.h"
#include "rydes/role.h"
#include "rydes/secret.h"
#include "rydes/services.h"
#include "rydes/topic_cache.h"
#include "rydes/ttlcache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app {
    const struct config *cfg; /* borrowed; must outlive the app */
    struct db_pool *pool;
    struct metrics *metrics;
    struct http_server *http;
    struct mq_hub *hub; /* wakes long polls */
    struct mq_sweeper *sweeper;
    struct mq_fanout *fanout;     /* delivers the publish outbox */
    struct mq_combiner *combiner; /* single sends stored together; NULL: each alone */
    struct mq_push *push;         /* NULL unless RYDES_WORKERS includes push */
    struct services *services;    /* the built-in consumers RYDES_WORKERS names */
    struct ratelimit *rate_limits[ROLE_ADMIN + 1]; /* per token (an app token's per address),
                                                    * RYDES_RATE_LIMIT_*: a table per
                                                    * role, so that tokens sharing a slot share
                                                    * a rate (one with a higher rate would refill
                                                    * the other's bucket faster) */
    struct ratelimit *auth_failures;     /* per client address: lookups that found nothing */
    struct ratelimit *auth_failures_all; /* the same for the whole process (one bucket) */
    struct ratelimit *app_token_totals;  /* per app token: RYDES_RATE_LIMIT_APP_TOKEN */
    struct ttlcache *seen_valid;         /* credentials found valid lately (app_lookup_allowed) */
    struct ttlcache *token_cache;        /* SHA-256 of a token -> enum role */
    struct ttlcache *queue_cache;        /* queue name -> struct mq_queue */
    struct ttlcache *aws_key_cache;      /* SigV4 access key id -> struct aws_key */
    struct topic_cache *topic_cache;     /* topics with compiled subscriptions */
    struct ops_cache *ops_cache;         /* what /metrics and /readyz read lately */
    struct mq_publish_counters publish_counters;
    int64_t started_wall_us;
    char *tls_cert, *tls_key; /* PEM text of RYDES_TLS_CERT / RYDES_TLS_KEY, or NULL */
};

/* Starts everything: migrations (when cfg->migrate), the pool, the admin token, the server.
 * Returns false with err filled (and everything started so far stopped again). */
bool app_start(struct app *app, const struct config *cfg, char *err, size_t errlen);
/* The same without the HTTP server: `rydes worker NAME…`. Stop with app_stop. */
bool app_start_workers(struct app *app, const struct config *cfg, char *err, size_t errlen);
/* Graceful stop: stop accepting, let in-flight requests finish (cfg->shutdown_timeout), close
 * the pool. */
void app_stop(struct app *app);
/* Charges one request of a token of role role, hash the SHA-256 of the bearer token (SigV4
 * requests use their key's token, so both APIs share one bucket), at the role's
 * RYDES_RATE_LIMIT_*. An app token is one for every customer of the app: its buckets are per
 * client address (peer, http_peer_key: an IPv6 /64), so one client over its rate does not
 * throttle the others; service and admin tokens have one bucket each. An app token's requests
 * from all addresses together are also charged to its RYDES_RATE_LIMIT_APP_TOKEN bucket, when
 * that is set. False when it is over: *retry_after then says in how many seconds. */
bool app_rate_take(struct app *app, const unsigned char hash[SECRET_HASH_LEN], enum role role,
                   const unsigned char *peer, size_t peer_len, int *retry_after);
/* Credentials that are not cached cost a database lookup, and unknown ones are never cached.
 * So lookups that find nothing are budgeted, per client address (http_peer_key):
 * RYDES_AUTH_FAILURE_BURST, refilled at RYDES_AUTH_FAILURES_PER_MINUTE, and per process: ten
 * times the burst, refilled twenty times as fast, which bounds the lookups many addresses
 * make together. Credentials found valid within the last APP_SEEN_VALID_S seconds (key: a
 * token's hash, an access key's id) are looked up whatever the budgets, so that clients
 * sharing an address with a failing one (behind a proxy) and known clients during a flood
 * from many addresses keep working; a lookup that finds them gone ends that. Others wait
 * (429) while a budget is empty. */
#define APP_SEEN_VALID_S 600
enum app_lookup {
    APP_LOOKUP_OK,
    APP_LOOKUP_ADDRESS_FAILING, /* this address used up its budget */
    APP_LOOKUP_ALL_FAILING,     /* all addresses together used up the process's */
};
/* May credentials key (not in a cache) sent from peer be looked up? When not, *retry_after
 * says when to try again. A lookup allowed is charged to the budgets before it runs (lookups
 * running at once cannot all pass one token), *charged then: credentials found valid lately
 * are looked up free. With charged NULL nothing is charged: the question only (an HTTP thread
 * asks before it passes the lookup on, http_admit_elsewhere; the lookup is charged there). */
enum app_lookup app_lookup_allowed(struct app *app, const unsigned char *peer, size_t peer_len,
                                   const void *key, size_t key_len, int *retry_after,
                                   bool *charged);
/* What the lookup of key from peer found: valid (a charge is given back), or nothing (the
 * charge stays). A lookup that found out neither keeps its charge without calling this. */
void app_lookup_result(struct app *app, const unsigned char *peer, size_t peer_len, const void *key,
                       size_t key_len, bool valid, bool charged);
/* Runs the migrations (when migrate) and ensures the Wild Rydes topology (rydes/topology.h) on a
 * connection of its own; used by app_start and `rydes migrate`. */
bool app_migrate(const struct config *cfg, bool migrate, int *applied, char *err, size_t errlen);

#endif
