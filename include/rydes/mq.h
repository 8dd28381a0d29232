/* The messaging engine's queue interface: queue management, send, receive, delete, change
 * visibility, purge, peek and redrive over the tables and functions of sql/002_queues.sql.
 *
 * Every call takes a pooled connection the caller owns and runs as its own transaction (or one
 * statement). Results that own memory say who frees them. The engine knows nothing of HTTP:
 * inputs arrive validated (see rydes/mq_input.h) and outcomes are enum mq_status values. */
#ifndef RYDES_MQ_H
#define RYDES_MQ_H

#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/ids.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define MQ_NAME_MAX        80
#define MQ_MAX_BATCH       10
#define MQ_MAX_ROWS        16 /* messages of one mq_send_rows statement */
#define MQ_DEDUP_ID_MAX    128
#define MQ_GROUP_ID_MAX    128
#define MQ_RECEIPT_LEN     41 /* 40 hex characters and the NUL */
#define MQ_MAX_ATTRIBUTES  10
#define MQ_DEFAULT_LIMIT_N 100

enum mq_status {
    MQ_OK,
    MQ_NOT_FOUND,   /* no such queue (or message) */
    MQ_CONFLICT,    /* state conflict: superseded receipt, fifo change, ... */
    MQ_INVALID,     /* refused by a rule only the database can check (detail says which) */
    MQ_UNAVAILABLE, /* the database went away */
    MQ_BUSY,        /* no database connection came in time: all are in use */
    MQ_ERROR,       /* the database refused the statement: a bug */
};

struct mq_attrs {
    bool fifo;
    int visibility_timeout;
    int delay_seconds;
    int retention_seconds;
    int max_message_bytes;
    int receive_wait_seconds;
    bool content_based_dedup;
    char dead_letter_queue[MQ_NAME_MAX + 1]; /* "" when none */
    int max_receive_count;                   /* 0 when no dead-letter queue */
};

struct mq_queue {
    int id;
    char name[MQ_NAME_MAX + 1];
    struct mq_attrs attrs;
    int dead_letter_queue_id; /* 0 when none */
    char created_at[CLOCK_RFC3339_LEN];
};

struct mq_stats {
    long long available, in_flight, delayed;
    long long oldest_age_seconds;
    bool approximate; /* from the sweeper's last measurement of a deep queue */
};

/* One message to send, validated. body is owned by the caller. */
struct mq_send_entry {
    const char *body;
    size_t body_len;
    bool body_json;     /* body is JSON text to hand back as JSON */
    json_t *attributes; /* borrowed; NULL for none */
    int delay_seconds;  /* -1: the queue's default */
    const char *group_id;
    const char *dedup_id; /* FIFO; NULL: content-based (must be enabled) */
};

struct mq_send_result {
    char message_id[IDS_UUID_LEN];
    long long sequence; /* FIFO only */
    bool duplicate;
};

struct mq_message {
    long long id;
    char message_id[IDS_UUID_LEN];
    char receipt[MQ_RECEIPT_LEN];
    char *body; /* owned by the message */
    bool body_json;
    json_t *attributes; /* owned reference, or NULL */
    int receive_count;
    char sent_at[CLOCK_RFC3339_LEN];
    char first_received_at[CLOCK_RFC3339_LEN];
    char visible_at[CLOCK_RFC3339_LEN];
    char state[12]; /* peek: available, in_flight, delayed */
    char *group_id; /* owned; NULL unless FIFO */
};

/* Clears res (a failed statement's result) and says what the failure was: MQ_UNAVAILABLE for
 * a lost connection or a transient error (deadlock, timeout, serialization), MQ_CONFLICT for a
 * foreign key that a concurrent delete broke, else MQ_ERROR.
 * Shared with the layers above that run their own statements. */
enum mq_status mq_failed(struct db_conn *c, PGresult *res);

/* Frees the bodies and attributes of n messages and the array itself. */
void mq_messages_free(struct mq_message *msgs, int n);

/* Queue management. mq_queue_put creates (*created = true) or updates the queue; a change of
 * fifo is MQ_CONFLICT and an unknown or mismatched dead-letter queue MQ_INVALID, with detail. */
enum mq_status mq_queue_put(struct db_conn *c, const char *name, const struct mq_attrs *attrs,
                            bool *created, char *detail, size_t detail_len);
/* Changes the attributes of queue name in one transaction: reads them under the queue's row
 * lock, lets change(attrs, ctx) edit them (false: it refused, and nothing is written; *changed
 * tells), and writes them back, so that concurrent changes of different attributes all hold
 * and a queue deleted meanwhile is not made again. MQ_NOT_FOUND when there is no such queue;
 * the rest as mq_queue_put. */
enum mq_status mq_queue_change(struct db_conn *c, const char *name,
                               bool (*change)(struct mq_attrs *attrs, void *ctx), void *ctx,
                               bool *changed, char *detail, size_t detail_len);
/* mq_queue_put, and also(c, name, created, ctx) in the same transaction: what it writes commits
 * with the queue, and a status other than MQ_OK from it rolls both back and is returned. */
enum mq_status mq_queue_put_also(struct db_conn *c, const char *name, const struct mq_attrs *attrs,
                                 bool *created, char *detail, size_t detail_len,
                                 enum mq_status (*also)(struct db_conn *c, const char *name,
                                                        bool created, void *ctx),
                                 void *ctx);
enum mq_status mq_queue_get(struct db_conn *c, const char *name, struct mq_queue *out);
enum mq_status mq_queue_delete(struct db_conn *c, const char *name);
/* Lists up to limit queue names after the name after ("" from the start); *names is an array
 * of malloc'd strings, freed by the caller (each, then the array). */
enum mq_status mq_queue_list(struct db_conn *c, const char *after, int limit, char ***names,
                             int *count, bool *more);
/* mq_queue_list of the names that start with prefix. */
enum mq_status mq_queue_list_prefix(struct db_conn *c, const char *after, const char *prefix,
                                    int limit, char ***names, int *count, bool *more);
enum mq_status mq_queue_stats(struct db_conn *c, const struct mq_queue *q, struct mq_stats *out);

struct mq_depth {
    int id;
    char name[MQ_NAME_MAX + 1];
    struct mq_stats stats;
    bool dead_letter; /* some queue dead-letters into this one */
    double measured_age_seconds;
};

/* The sweeper's last depth measurement of every queue (no scan: one row per queue). *out is
 * allocated; the caller frees it. */
enum mq_status mq_queue_depths(struct db_conn *c, struct mq_depth **out, int *count);

/* Sends n (1..10) entries in one transaction; results[i] belongs to entries[i]. notify: some
 * process has long polls waiting on the queue (mq_hub_listened), so NOTIFY them. */
enum mq_status mq_send(struct db_conn *c, const struct mq_queue *q,
                       const struct mq_send_entry *entries, int n, struct mq_send_result *results,
                       bool notify);

/* One message of mq_send_rows: a single send to a standard queue. */
struct mq_send_row {
    const struct mq_queue *q;      /* borrowed */
    const struct mq_send_entry *e; /* borrowed */
    struct mq_send_result *result; /* filled */
};
/* Sends n (1..MQ_MAX_ROWS) messages to standard queues, of any queues, in one INSERT: all are
 * stored or none. NOTIFYs queue notify_queue in the same statement unless it is 0. mq_send of a
 * standard queue and the send combiner (rydes/mq_combiner.h) come here. */
enum mq_status mq_send_rows(struct db_conn *c, const struct mq_send_row *rows, int n,
                            int notify_queue);

/* Receives up to max messages leased for visibility_timeout seconds (deleted at once when
 * delete_now). *msgs is allocated (mq_messages_free); *count may be 0. */
enum mq_status mq_receive(struct db_conn *c, const struct mq_queue *q, int max,
                          int visibility_timeout, bool delete_now, struct mq_message **msgs,
                          int *count);
/* mq_receive without delete_now that also tells how many exhausted messages it moved to the
 * dead-letter queue instead of delivering them (*moved; always 0 for a FIFO queue, whose claim
 * moves them itself): a claim that came back short because of those may have left
 * deliverable messages behind. */
enum mq_status mq_receive_moving(struct db_conn *c, const struct mq_queue *q, int max,
                                 int visibility_timeout, struct mq_message **msgs, int *count,
                                 int *moved);

/* Deletes by receipt: MQ_OK also when the message is already gone; MQ_CONFLICT when the receipt
 * was superseded by a later receive; MQ_NOT_FOUND for a receipt that cannot be ours. */
enum mq_status mq_delete(struct db_conn *c, const struct mq_queue *q, const char *receipt);
/* Inside a transaction: locks the message of receipt until it ends (receives skip it meanwhile;
 * a FIFO message's group too). MQ_OK when receipt is still its latest, MQ_CONFLICT when it was
 * received again since, MQ_NOT_FOUND when it is gone (deleted, dead-lettered, expired). */
enum mq_status mq_hold(struct db_conn *c, const struct mq_queue *q, const char *receipt);
/* Deletes n (1..10) receipts in one round trip where it can: out[i] is the outcome of
 * receipts[i] as mq_delete would give it. Returns MQ_OK, or the database failure that stopped
 * the batch. */
enum mq_status mq_delete_many(struct db_conn *c, const struct mq_queue *q,
                              const char *const *receipts, int n, enum mq_status *out);
/* One receipt of mq_delete_rows. */
struct mq_delete_row {
    const struct mq_queue *q; /* a standard queue; borrowed */
    const char *receipt;      /* borrowed */
};
/* Deletes n (1..MQ_MAX_ROWS) receipts of standard queues, of any queues, in one DELETE (a lone
 * one in the one-row DELETE of mq_delete; each receipt that deleted nothing is tried again
 * alone): out[i] is the outcome of rows[i] as mq_delete would give it. Returns MQ_OK, or the
 * database failure that stopped it; out[i] then still says what was found before (MQ_OK: its
 * delete committed; MQ_CONFLICT: superseded), and the failure for a receipt not tried.
 * mq_delete_many of a standard queue and the combiner (rydes/mq_combiner.h) come here. */
enum mq_status mq_delete_rows(struct db_conn *c, const struct mq_delete_row *rows, int n,
                              enum mq_status *out);
/* Sets the message's visibility to now + seconds: MQ_CONFLICT when superseded, MQ_NOT_FOUND
 * when the message is gone. */
enum mq_status mq_change_visibility(struct db_conn *c, const struct mq_queue *q,
                                    const char *receipt, int seconds);
/* Gives a received message back as if that receive had not happened (sql/039): visible now,
 * its receive_count down by one. For a consumer handing back messages it did not try (a FIFO
 * group's after a failed one). Outcomes as mq_change_visibility's. */
enum mq_status mq_release_unreceived(struct db_conn *c, const struct mq_queue *q,
                                     const char *receipt);
enum mq_status mq_purge(struct db_conn *c, const struct mq_queue *q);
/* The first messages of q after id after (0: from the first) without changing them: up to limit,
 * and no more once the bodies and attributes read so far reach MQ_PEEK_BYTES (at least one
 * message); *more says whether messages follow the last one. *msgs is the caller's
 * (mq_messages_free). */
#define MQ_PEEK_BYTES (4 * 1024 * 1024)
enum mq_status mq_peek(struct db_conn *c, const struct mq_queue *q, long long after, int limit,
                       struct mq_message **msgs, int *count, bool *more);
/* Moves up to max (0: all) messages of dead-letter queue dlq back to their source queues, or
 * to the queue named to when to is not NULL. */
enum mq_status mq_redrive(struct db_conn *c, const struct mq_queue *dlq, const struct mq_queue *to,
                          long long max, long long *moved);

/* Receipts: 8 hex digits of the queue's id, 16 of the message's and 16 of the receive's nonce
 * (a receipt names its queue, so one used on another queue is refused, not "deleted"). */
void mq_receipt_encode(int queue_id, long long id, unsigned long long nonce, char *out);
bool mq_receipt_decode(const char *receipt, int *queue_id, long long *id,
                       unsigned long long *nonce);

#endif
