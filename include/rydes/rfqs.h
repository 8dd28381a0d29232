/* Wild Rydes instant-ride RFQs, the scatter-gather of the talk: a request for quotes is
 * published on topic rfq-requests with a correlation id (the RFQ id) and a return address
 * (queue rfq-responses); every subscribed unicorn answers there; the aggregator gathers one
 * quote per unicorn and the RFQ is done when all expected unicorns answered or at its eta. */
#ifndef RYDES_RFQS_H
#define RYDES_RFQS_H

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/idempotency.h"
#include "rydes/ids.h"
#include "rydes/mq.h"
#include "rydes/topic_cache.h"
#include "rydes/validate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define RFQS_TOPIC         "rfq-requests"
#define RFQS_RESPONSES     "rfq-responses"
#define RFQS_UNICORN_QUEUE "rfq-unicorn-" /* + the unicorn's name: its queue */
#define RFQS_KEY_SCOPE     "rfqs"         /* of their idempotency keys */
#define RFQS_TIMEOUT_MIN   1
#define RFQS_TIMEOUT_MAX   300
#define RFQS_TIMEOUT_DEF   30
#define RFQS_GOODIES_MAX   20
#define RFQS_PRICE_MAX     1000000.0

struct rfq_input {
    const char *from, *to, *customer;
    int timeout_s;
};

/* Reads {from, to, customer, timeout_in_secs?} (hyphenated aliases accepted). Pure. */
void rfq_input(json_t *body, struct rfq_input *in, struct field_errors *fe);

struct quote_input {
    const char *unicorn;
    double price;
    json_t *goodies; /* borrowed array of strings, or NULL */
};

/* Reads a quote {unicorn, price, goodies?}; field names get prefix ("" at the top). Pure. */
void quote_input(json_t *body, struct quote_input *in, struct field_errors *fe);

struct rfq_quote {
    char *unicorn; /* owned */
    double price;
    json_t *goodies; /* owned */
    char received_at[CLOCK_RFC3339_LEN];
};

struct rfq {
    char id[IDS_UUID_LEN];
    char *from, *to, *customer; /* owned */
    bool done;
    char reason[16]; /* all_answered, timeout; "" while running */
    int expected, responses;
    char submitted_at[CLOCK_RFC3339_LEN], eta[CLOCK_RFC3339_LEN], completed_at[CLOCK_RFC3339_LEN];
    struct rfq_quote *quotes; /* owned, cheapest first (rfqs_get with quotes) */
    int nquotes;
};

void rfq_clear(struct rfq *r);
/* GET /rfqs/{id}/status and the 202 body (result_link: name the result link even while
 * running, as the 202 does). */
json_t *rfq_status_json(const struct rfq *r, bool result_link);
/* An item of GET /rfqs: the status representation with from, to, customer, submitted_at and,
 * once done, completed_at (a new reference). */
json_t *rfq_summary_json(const struct rfq *r);
/* GET /rfqs/{id}/result (also while running, for /query-instant-ride-rfq). */
json_t *rfq_result_json(const struct rfq *r);

enum rfqs_outcome {
    RFQS_SUBMITTED,  /* stored and published */
    RFQS_REPLAYED,   /* the key was used before with this request: its RFQ as it stands */
    RFQS_KEY_REUSED, /* the key was used before with another request: nothing done */
    RFQS_FAILED,     /* nothing done; *st says why (MQ_NOT_FOUND: no topic) */
};

/* Stores the RFQ and publishes the request in one transaction; expected_responses is the
 * number of unicorns it asks (the rfq-unicorn-NAME queues whose subscriptions took it, each
 * once), or of the targets it went to when it asks none by name. set NULL: no topic. key (NULL:
 * none) with hash (rfqs_request_hash) makes a retry find the RFQ of the first request instead
 * of asking again. out is filled unless RFQS_KEY_REUSED or RFQS_FAILED (rfq_clear it). */
enum rfqs_outcome rfqs_submit(struct db_conn *c, const struct topic_set *set,
                              const struct rfq_input *in, const char *key, const char *hash,
                              bool (*listened)(void *ctx, int queue_id), void *ctx, struct rfq *out,
                              struct mq_publish_result *published, enum mq_status *st);
/* The RFQ the request of hash made under key: RFQS_REPLAYED (out filled: rfq_clear it) or
 * RFQS_KEY_REUSED (another request used the key). An unknown key is RFQS_FAILED with *st
 * MQ_NOT_FOUND, or KEY_REUSED after_claim (a claim found the key taken: it was swept since). */
enum rfqs_outcome rfqs_find_key(struct db_conn *c, const char *key, const char *hash,
                                bool after_claim, struct rfq *out, enum mq_status *st);
/* The canonical hash of an RFQ request for its Idempotency-Key. */
void rfqs_request_hash(const struct rfq_input *in, char out[IDEMPOTENCY_HASH_LEN]);
/* Reads RFQ id (its quotes too when with_quotes). MQ_NOT_FOUND for unknown ids. An RFQ past its
 * eta reads as done (timeout) even before the deadline timer recorded it. */
enum mq_status rfqs_get(struct db_conn *c, const char *id, bool with_quotes, struct rfq *out);
/* Lists up to limit RFQs newest first (by submitted_at, then id), after the cursor after_us
 * (microseconds since the epoch; NULL: from the newest) and after_id (a UUID); see
 * DB_PAGE_CURSOR. *rfqs is allocated (rfq_clear each, then free the array); next receives the
 * cursor of the next page, "" when this was the last. */
enum mq_status rfqs_list(struct db_conn *c, const char *after_us, const char *after_id, int limit,
                         struct rfq **rfqs, int *count, char *next, size_t next_len);
/* Puts a quote for RFQ id into the return address queue q, as a unicorn would. */
enum mq_status rfqs_enqueue_quote(struct db_conn *c, const struct mq_queue *q, const char *id,
                                  const struct quote_input *in, bool notify);

/* QUOTE_NOT_ASKED: the RFQ asked its unicorns by name (sql/024) and this one is not among them. */
enum quote_outcome {
    QUOTE_STORED,
    QUOTE_COMPLETED,
    QUOTE_UNKNOWN,
    QUOTE_FINISHED,
    QUOTE_NOT_ASKED,
    QUOTE_SUPERSEDED /* the unicorn's stored quote was sent after this one */
};

/* The aggregator's step for one quote (inside the caller's transaction); sent_at (RFC 3339, or
 * NULL when not known) is when its message was sent and seq the message's id: a unicorn's quote
 * replaces its earlier one only when sent later, or at the same time (to the millisecond) by a
 * message inserted later (sql/049). */
enum mq_status rfqs_add_quote(struct db_conn *c, const char *id, const struct quote_input *in,
                              const char *sent_at, long long seq, enum quote_outcome *outcome);
/* Does RFQ id take quotes from unicorn (one it asked, or any when it asked none by name)?
 * MQ_NOT_FOUND when there is no such RFQ. */
enum mq_status rfqs_asked(struct db_conn *c, const char *id, const char *unicorn, bool *asked);
/* RFQs past their eta whose timeout a status or result read of this process recorded first
 * (rfqs_get), before the deadline timer did. */
uint64_t rfqs_settled_total(void);
/* Completes every running RFQ past its eta; *n how many. */
enum mq_status rfqs_expire(struct db_conn *c, int *n);

/* The name of simulated unicorn i (0-based) into out: shadowfax, sparkle, ..., unicorn-11. Its
 * queue is "rfq-unicorn-" + name. */
void rfqs_unicorn_name(int i, char *out, size_t n);

#endif
