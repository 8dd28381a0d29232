/* The API layer: the route table of the gateway and the helpers its handlers share. Handlers
 * decode the request, call the layers below, and encode the response; they contain no SQL. */
#ifndef RYDES_API_H
#define RYDES_API_H

#include "rydes/db.h"
#include "rydes/http.h"
#include "rydes/mq.h"
#include "rydes/tokens.h"
#include "rydes/topic_cache.h"
#include "rydes/validate.h"

#include <stdbool.h>

#define API_ID_MAX 64 /* the longest id of a listed item: a fare id */

struct mq_combined_publish; /* rydes/mq_combiner.h */

extern const struct route api_routes[];
extern const size_t api_nroutes;

/* Takes a pooled connection for the request. NULL when none is available; a 503 with
 * Retry-After is then already queued and *res holds its result. */
struct db_conn *api_db_acquire(struct http_request *req, enum handler_result *res);
/* The 503 of a request that got no pooled connection, saying why. */
enum handler_result api_reply_no_conn(struct http_request *req, enum db_acquire_error why);
/* Whether work on a data-plane thread (http_offload_work), which cannot answer, got no pooled
 * connection, and why: its way on answers api_reply_no_conn(req, why) when missed. */
struct api_conn_miss {
    bool missed;
    enum db_acquire_error why;
};
/* Takes a pooled connection for such work; NULL with *miss filled. Give it back with
 * api_db_release. */
struct db_conn *api_db_for_work(struct http_request *req, struct api_conn_miss *miss);
void api_db_release(struct http_request *req, struct db_conn *c);
/* Answers a failed store call: 503 when the database went away, 500 otherwise. */
enum handler_result api_store_failed(struct http_request *req, enum store_result r);
/* Reads ?limit= (1..1000, default 100) and ?after=; records field errors for bad values. */
bool api_page(struct http_request *req, int *limit, const char **after, struct field_errors *fe);
/* api_page for a list whose cursor is a name valid() accepts: false with the 400 answered. */
bool api_name_page(struct http_request *req, bool (*valid)(const char *name), int *limit,
                   const char **after, enum handler_result *res);
/* The ?after= of a newest-first list (GET /tasks, /rfqs, /fares): "MICROS.ID" as
 * DB_PAGE_CURSOR makes it. */
struct api_time_cursor {
    char us[24]; /* "" when the list starts from the newest */
    char id[API_ID_MAX + 1];
};
/* Reads ?limit= and ?after= of a newest-first list whose ids valid_id accepts, and answers 400
 * naming each bad one: false (with *res set) then. */
bool api_time_page(struct http_request *req, bool (*valid_id)(const char *id), int *limit,
                   struct api_time_cursor *cur, enum handler_result *res);
/* When fe holds errors: queues the 400 naming them, cleans fe up, sets *res and returns true.
 * Reads as: if (api_reply_invalid(req, &fe, &res)) return res; */
bool api_reply_invalid(struct http_request *req, struct field_errors *fe, enum handler_result *res);
/* Answers 400 with the one field error field: message. */
enum handler_result api_reply_field_error(struct http_request *req, const char *field,
                                          const char *message);
/* DELETE of the resource named by {name}: 404 (not_found) for a name valid() refuses or del
 * does not find, 204 otherwise; forget() drops this process's cached copy either way. */
enum handler_result api_delete_named(struct http_request *req, bool (*valid)(const char *name),
                                     enum mq_status (*del)(struct db_conn *c, const char *name),
                                     void (*forget)(struct app *app, const char *name),
                                     const char *not_found);
/* Lists names with ?limit= and ?after= (which valid must accept) into
 * {key: [{name, links: links(name)}], next}. */
typedef enum mq_status (*name_lister)(struct db_conn *c, const char *after, int limit,
                                      char ***names, int *count, bool *more);
enum handler_result api_list_names(struct http_request *req, const char *key,
                                   bool (*valid)(const char *name), name_lister list,
                                   json_t *(*links)(const char *name));
/* Checks the envelope of a batch body: member key holds 1..10 items; with_ids: each an object
 * with a distinct id of 1..80 [A-Za-z0-9_-]. Returns the array (borrowed from req->json), or
 * NULL with a 400 queued and *res set. */
json_t *api_batch_items(struct http_request *req, const char *key, bool with_ids,
                        enum handler_result *res);
/* The Idempotency-Key header (borrowed from req), or NULL when absent; an invalid one (not 1..255
 * visible ASCII characters) is recorded in fe. */
const char *api_idempotency_key(struct http_request *req, struct field_errors *fe);
/* The 422 of an Idempotency-Key used before with another request body. */
enum handler_result api_key_reused(struct http_request *req);
/* Requires the body to be a JSON object; queues a 400 and returns false otherwise. */
bool api_body_object(struct http_request *req, enum handler_result *res);

/* Reads the queue named by {name}; on failure the 404/503/500 is queued and *res set. */
bool api_queue(struct http_request *req, struct db_conn *c, struct mq_queue *q,
               enum handler_result *res);
/* Reads the queue named by {name}, from the cache when it can (then without a connection);
 * false with the failure answered otherwise. For the route handlers of an HTTP thread: one the
 * cache cannot answer is looked up on a data-plane thread (http_may_wait), *res then
 * HANDLER_SUSPENDED, and the handler runs again from the start, its state freed, to find it. */
bool api_queue_lookup(struct http_request *req, struct mq_queue *q, enum handler_result *res);
/* Takes a connection and reads the queue named by {name}; NULL (the failure already answered,
 * *res set) when either fails. Give the connection back with api_db_release. */
struct db_conn *api_queue_conn(struct http_request *req, struct mq_queue *q,
                               enum handler_result *res);
/* Answers a failed engine call with the status its outcome maps to. */
enum handler_result api_mq_failure(struct http_request *req, enum mq_status st, const char *detail);
/* Answers 200 with {"messages": [...]}, the representation of received or peeked messages;
 * frees msgs (mq_messages_free). */
enum handler_result api_reply_messages(struct http_request *req, struct mq_message *msgs, int count,
                                       bool fifo);
/* The same with "next" when paged: the cursor next (digits), or null when NULL. */
enum handler_result api_reply_message_page(struct http_request *req, struct mq_message *msgs,
                                           int count, bool fifo, bool paged, const char *next);

/* Handlers, one group per file under src/api/. */
/* Topic name with its subscriptions from the process's cache (loaded on c when needed); a
 * reference the caller releases with topic_set_release, or NULL with *st set. */
struct topic_set *api_cached_topic(struct http_request *req, struct db_conn *c, const char *name,
                                   enum mq_status *st);
/* 503 for a channel of the Wild Rydes topology (kind "topic" or "queue") that an operator
 * deleted: the next start-up re-creates it. */
enum handler_result api_topology_missing(struct http_request *req, const char *kind,
                                         const char *name);
/* Counts an accepted publish for /metrics and wakes the push worker when it has URLs to do. */
void api_published(struct http_request *req, const struct mq_publish_result *r);
/* The cached topic name when the combiner may take its publishes (standard, every publish lean:
 * mq_publish_always_lean), without asking the database; else NULL. Release it. */
struct topic_set *api_cached_lean_topic(struct http_request *req, const char *name);
/* Hands plan (borrowed, kept alive by the caller's state) to the combiner's publish lane in cp
 * and suspends the request until then runs, with cp->o.status the outcome. A plan nobody wants
 * (n == 0) is counted and then runs at once; a hand-over the combiner refuses (stopping, busy)
 * sets *refused and resumes at once. */
enum handler_result api_publish_handed_over(struct http_request *req,
                                            struct mq_combined_publish *cp,
                                            const struct mq_publish_plan *plan, bool *refused,
                                            route_handler then);

/* What the open operations endpoints (/metrics, /readyz: no token) cache, so that their rate
 * does not set what they cost the database (src/api/ops_metrics.c). One per app. */
struct ops_cache *ops_cache_create(void);
void ops_cache_free(struct ops_cache *c);
/* The migrations the database said were applied less than a second ago, all of them (as
 * ops_cache_ready_seen was told), or -1. */
int ops_cache_ready(struct ops_cache *c);
void ops_cache_ready_seen(struct ops_cache *c, int applied);

enum handler_result api_healthz(struct http_request *req);
enum handler_result api_readyz(struct http_request *req);
/* Appends every /metrics series but the HTTP ones (src/api/ops_metrics.c). */
void ops_metrics_render(struct http_request *req, struct buf *out);
enum handler_result api_metrics(struct http_request *req);
enum handler_result api_openapi(struct http_request *req);
/* The dashboard (src/api/ui.c): GET /ui and GET /ui/{file}. */
enum handler_result api_ui_index(struct http_request *req);
enum handler_result api_ui_file(struct http_request *req);
enum handler_result api_tokens_create(struct http_request *req);
enum handler_result api_tokens_list(struct http_request *req);
enum handler_result api_tokens_get(struct http_request *req);
enum handler_result api_tokens_delete(struct http_request *req);
enum handler_result api_queues_put(struct http_request *req);
enum handler_result api_queues_get(struct http_request *req);
enum handler_result api_queues_list(struct http_request *req);
enum handler_result api_queues_delete(struct http_request *req);
enum handler_result api_queues_purge(struct http_request *req);
enum handler_result api_queues_redrive(struct http_request *req);
enum handler_result api_queues_peek(struct http_request *req);
enum handler_result api_messages_send(struct http_request *req);
enum handler_result api_messages_send_batch(struct http_request *req);
enum handler_result api_messages_receive(struct http_request *req);
enum handler_result api_messages_delete(struct http_request *req);
enum handler_result api_messages_delete_batch(struct http_request *req);
enum handler_result api_messages_visibility(struct http_request *req);
enum handler_result api_topics_put(struct http_request *req);
enum handler_result api_topics_get(struct http_request *req);
enum handler_result api_topics_list(struct http_request *req);
enum handler_result api_topics_delete(struct http_request *req);
enum handler_result api_topics_publish(struct http_request *req);
enum handler_result api_subscriptions_put(struct http_request *req);
enum handler_result api_subscriptions_list(struct http_request *req);
enum handler_result api_subscriptions_get(struct http_request *req);
enum handler_result api_subscriptions_delete(struct http_request *req);
enum handler_result api_recipient_list(struct http_request *req);
enum handler_result api_topics_publish_batch(struct http_request *req);
enum handler_result api_rides_create(struct http_request *req);
enum handler_result api_rides_get(struct http_request *req);
enum handler_result api_rides_list(struct http_request *req);
/* The operators' newest-first lists (admin): GET /tasks, GET /rfqs, GET /fares. */
enum handler_result api_tasks_list(struct http_request *req);
enum handler_result api_rfqs_list(struct http_request *req);
enum handler_result api_fares_list(struct http_request *req);
enum handler_result api_prebookings_create(struct http_request *req);
enum handler_result api_prebookings_get(struct http_request *req);
enum handler_result api_tasks_get(struct http_request *req);
enum handler_result api_fares_create(struct http_request *req);
enum handler_result api_fares_get(struct http_request *req);
enum handler_result api_rides_fare(struct http_request *req);
enum handler_result api_rfqs_create(struct http_request *req);
enum handler_result api_rfqs_status(struct http_request *req);
enum handler_result api_rfqs_result(struct http_request *req);
enum handler_result api_rfqs_query(struct http_request *req);
enum handler_result api_rfqs_quote(struct http_request *req);

#endif
