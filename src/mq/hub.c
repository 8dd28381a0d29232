/* The long-poll wake-up hub; see include/rydes/mq_hub.h.
 *
 * One thread owns the LISTEN connection and polls its socket together with a self-pipe (used to
 * interrupt the poll when a waiter needs it sooner, or the hub stops). Under a mutex, each queue
 * with waiters has them in a line, oldest first (a notification wakes the head of its queue's
 * line), and all waiters are in a binary heap by deadline (the hub answers the due ones and
 * sleeps until the next): waking, registering and expiring cost a few steps whatever the number
 * of waiters (a heap's log n; the once-a-second check still scans the queue table). Wakes are
 * collected under the mutex and delivered after it is released, so a wake callback may call back
 * into the hub. */
#include "rydes/mq_hub.h"

#include "rydes/buf.h"
#include "rydes/clock.h"
#include "rydes/db.h"
#include "rydes/log.h"
#include "rydes/mem.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HUB_CHECK_INTERVAL_US  1000000  /* the visibility check of queues with waiters */
#define HUB_RETRY_US           1000000  /* between connection attempts */
#define HUB_SEQ_SLOTS          1024     /* queue ids sharing a slot only cause a spurious wake */
#define HUB_ANNOUNCE_US        10000000 /* listener rows are renewed this often... */
#define HUB_ANNOUNCE_TTL       "30"     /* ...and expire after this many seconds */
#define HUB_LISTEN_BITS        4096     /* queues with listeners anywhere, hashed into a bitmap */
#define HUB_LISTEN_REFRESH_US  200000   /* how often that bitmap is read from queue_listeners */
#define HUB_LISTEN_STALE_US    1000000  /* older than this, every queue counts as listened to */
#define HUB_ANNOUNCE_SETTLE_US 500000   /* after announcing: senders' bitmaps have caught up */
#define HUB_EXPIRE_EVERY_US    50000    /* deadlines are looked at this often during the check */
#define HUB_CHUNK              500      /* queues per statement of a check */

/* A queue with waiters in this process, or announced by it in queue_listeners lately (so
 * senders NOTIFY it). In an open-addressing table under mu (linear probing, deletion by
 * backward shift), sized at start to twice the waiters allowed: every queue a waiter waits on
 * has its entry, however many queues there are. */
struct hub_queue {
    int queue_id; /* 0: a free slot (queue ids begin at 1) */
    int waiters;
    int64_t announced_us;           /* 0: not announced (on the current connection) */
    struct mq_waiter *first, *last; /* its waiters, oldest first (through prev and next) */
};

struct mq_hub {
    char *conninfo;
    int connect_timeout_s;
    int max_waiters;
    pthread_t thread;
    bool joined; /* by mq_hub_shutdown, which one thread calls */
    pthread_mutex_t mu;
    struct mq_waiter **heap; /* every waiter, a binary min-heap by deadline; max_waiters slots */
    int nwaiters;
    bool fresh; /* a queue with waiters lacks its announcement: check at once */
    bool stopping;
    _Atomic uint64_t seq[HUB_SEQ_SLOTS]; /* notifications per queue id (hashed) */
    int pipe_rd, pipe_wr;
    PGconn *pg;                     /* owned by the hub thread; NULL while not connected */
    struct connect_job *connecting; /* a connection being opened on a thread of its own */
    bool connect_failing;           /* the last attempt failed (logged once) */
    int64_t next_connect_us;        /* when the next attempt may begin */
    int64_t next_check_us;
    char listener[128];       /* host:pid:start, this process's name in queue_listeners */
    struct hub_queue *queues; /* under mu; qcap slots, a power of two */
    size_t qcap, qused;
    _Atomic uint64_t listened[HUB_LISTEN_BITS / 64]; /* queues some process waits on */
    _Atomic int64_t listened_at_us;                  /* 0: never read */
    int64_t next_listen_us;
    void (*on_topics)(void *ctx, int topic_id); /* may be NULL */
    void *on_topics_ctx;
    atomic_bool listening; /* the LISTEN connection is up */
};

/* ---- the queue table (under mu) ---- */

static size_t queue_home(const struct mq_hub *h, int queue_id)
{
    return ((uint32_t)queue_id * 2654435761u) & (h->qcap - 1);
}

/* queue_id's entry, or NULL. */
static struct hub_queue *queue_find(struct mq_hub *h, int queue_id)
{
    for (size_t i = queue_home(h, queue_id);; i = (i + 1) & (h->qcap - 1)) {
        if (h->queues[i].queue_id == queue_id)
            return &h->queues[i];
        if (!h->queues[i].queue_id)
            return NULL;
    }
}

/* Frees slot i, moving later entries of its probe run back so none is left behind a hole. */
static void queue_remove_at(struct mq_hub *h, size_t i)
{
    size_t mask = h->qcap - 1;
    h->queues[i].queue_id = 0;
    h->qused--;
    for (size_t j = (i + 1) & mask; h->queues[j].queue_id; j = (j + 1) & mask) {
        size_t home = queue_home(h, h->queues[j].queue_id);
        /* j's entry may move to the hole at i unless its home lies cyclically in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            h->queues[i] = h->queues[j];
            h->queues[j].queue_id = 0;
            i = j;
        }
    }
}

/* Drops the entries of queues without waiters whose announcement is older than max_age_us (0:
 * all of them): they are announced again should a waiter come. */
static void queue_forget(struct mq_hub *h, int64_t now, int64_t max_age_us)
{
    for (size_t i = 0; i < h->qcap;) {
        struct hub_queue *q = &h->queues[i];
        if (q->queue_id && !q->waiters && (!max_age_us || now - q->announced_us > max_age_us))
            queue_remove_at(h, i); /* slot i holds a moved entry now, or nothing: look again */
        else
            i++;
    }
}

/* queue_id's entry, made if missing. The table holds at most max_waiters queues with waiters,
 * half its slots: when it is three quarters full, idle ones are dropped first. */
static struct hub_queue *queue_get(struct mq_hub *h, int queue_id)
{
    struct hub_queue *q = queue_find(h, queue_id);
    if (q)
        return q;
    if ((h->qused + 1) * 4 > h->qcap * 3)
        queue_forget(h, 0, 0);
    assert(h->qused < h->qcap); /* at most max_waiters queues have waiters: half the slots */
    size_t i = queue_home(h, queue_id);
    while (h->queues[i].queue_id)
        i = (i + 1) & (h->qcap - 1);
    h->queues[i] = (struct hub_queue){.queue_id = queue_id};
    h->qused++;
    return &h->queues[i];
}

/* ---- the deadline heap (under mu) ---- */

static void heap_put(struct mq_hub *h, int i, struct mq_waiter *w)
{
    h->heap[i] = w;
    w->heap_at = i;
}

/* Moves the waiter at i up or down to its place. */
static void heap_fix(struct mq_hub *h, int i)
{
    struct mq_waiter *w = h->heap[i];
    while (i > 0 && w->deadline_us < h->heap[(i - 1) / 2]->deadline_us) {
        heap_put(h, i, h->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (int c; (c = 2 * i + 1) < h->nwaiters; i = c) {
        if (c + 1 < h->nwaiters && h->heap[c + 1]->deadline_us < h->heap[c]->deadline_us)
            c++;
        if (h->heap[c]->deadline_us >= w->deadline_us)
            break;
        heap_put(h, i, h->heap[c]);
    }
    heap_put(h, i, w);
}

static void heap_add(struct mq_hub *h, struct mq_waiter *w)
{
    heap_put(h, h->nwaiters++, w);
    heap_fix(h, w->heap_at);
}

static void heap_remove(struct mq_hub *h, struct mq_waiter *w)
{
    struct mq_waiter *last = h->heap[--h->nwaiters];
    if (last != w) {
        heap_put(h, w->heap_at, last);
        heap_fix(h, last->heap_at);
    }
}

/* ---- waiters (under mu) ---- */

/* Puts w at the end of its queue's line and into the deadline order. */
static void link_waiter(struct mq_hub *h, struct hub_queue *q, struct mq_waiter *w)
{
    w->prev = q->last;
    w->next = NULL;
    if (q->last)
        q->last->next = w;
    else
        q->first = w;
    q->last = w;
    q->waiters++;
    heap_add(h, w);
}

static void unlink_waiter(struct mq_hub *h, struct mq_waiter *w)
{
    struct hub_queue *q = queue_find(h, w->queue_id); /* kept while it has waiters */
    assert(q && q->waiters > 0);
    q->waiters--;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->first = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->last = w->prev;
    w->prev = w->next = NULL;
    heap_remove(h, w);
}

/* Moves waiter w onto the local list out (singly linked through next). Called under mu. */
static void take(struct mq_hub *h, struct mq_waiter *w, struct mq_waiter **out)
{
    unlink_waiter(h, w);
    w->next = *out;
    *out = w;
}

static void deliver(struct mq_waiter *list, enum mq_wake why)
{
    while (list) {
        struct mq_waiter *next = list->next;
        list->next = NULL;
        list->wake(list, why);
        list = next;
    }
}

static void interrupt(struct mq_hub *h)
{
    char b = 1;
    ssize_t ignored = write(h->pipe_wr, &b, 1);
    (void)ignored;
}

/* Wakes the oldest waiter of queue_id, if any. */
static void wake_one(struct mq_hub *h, int queue_id)
{
    struct mq_waiter *woken = NULL;
    pthread_mutex_lock(&h->mu);
    const struct hub_queue *q = queue_find(h, queue_id);
    if (q && q->first)
        take(h, q->first, &woken);
    pthread_mutex_unlock(&h->mu);
    deliver(woken, MQ_WAKE_MESSAGE);
}

static void wake_all(struct mq_hub *h, enum mq_wake why)
{
    struct mq_waiter *woken = NULL;
    pthread_mutex_lock(&h->mu);
    while (h->nwaiters)
        take(h, h->heap[h->nwaiters - 1], &woken); /* the heap's last: nothing moves */
    pthread_mutex_unlock(&h->mu);
    deliver(woken, why);
}

/* Wakes the waiters whose deadline passed; returns the earliest deadline still pending. */
static int64_t expire(struct mq_hub *h, int64_t now)
{
    struct mq_waiter *woken = NULL;
    pthread_mutex_lock(&h->mu);
    while (h->nwaiters && h->heap[0]->deadline_us <= now)
        take(h, h->heap[0], &woken);
    int64_t earliest = h->nwaiters ? h->heap[0]->deadline_us : INT64_MAX;
    pthread_mutex_unlock(&h->mu);
    deliver(woken, MQ_WAKE_TIMEOUT);
    return earliest;
}

static void topics_changed(struct mq_hub *h, int topic_id)
{
    if (h->on_topics)
        h->on_topics(h->on_topics_ctx, topic_id);
}

/* Makes the connection just opened (and listening) the hub's, then has every queue with
 * waiters announced and checked, and every cached topic read again (anything may have arrived
 * while nobody listened). The waiters are not woken to look again themselves: all of them at
 * once would crowd the pool (see announce). */
static void hub_connected(struct mq_hub *h, PGconn *pg)
{
    PQsetnonblocking(pg, 1);
    h->pg = pg;
    /* announced again on the new connection: the next step does so (fresh) and its check
     * wakes a waiter where a message is visible, sent while nobody listened */
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->qcap; i++)
        h->queues[i].announced_us = 0;
    h->fresh = true;
    pthread_mutex_unlock(&h->mu);
    atomic_store(&h->listening, true);
    topics_changed(h, 0);
}

/* A connection being opened for the hub by a thread of its own, so that the hub keeps answering
 * waiters at their deadlines meanwhile (a connect to an unreachable host takes the whole
 * connect timeout, per host, and names are resolved by blocking calls): libpq's blocking
 * connect keeps its own rules (connect_timeout per host and address, the next host after
 * one that fails). Shared by the two threads; the last one to let go frees it. */
struct connect_job {
    pthread_mutex_t mu;
    int refs;       /* under mu: the hub's and the connecting thread's */
    bool done;      /* under mu: pg is the outcome (NULL: failed, err says why) */
    bool abandoned; /* under mu: the hub stopped; the connecting thread closes pg itself */
    PGconn *pg;
    int notify_fd; /* written once done: the hub's self-pipe (a copy, closed with the job) */
    char *conninfo;
    int connect_timeout_s;
    char err[256];
};

static void job_release(struct connect_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    PQfinish(j->pg); /* NULL-safe; set only when no one took it */
    close(j->notify_fd);
    pthread_mutex_destroy(&j->mu);
    free(j->conninfo);
    free(j);
}

static void *connect_main(void *arg)
{
    struct connect_job *j = arg;
    char err[sizeof j->err] = "";
    /* the hub must never stall on a query: bounded, and planned like the pool's (index only) */
    PGconn *pg = db_connect(
        j->conninfo, j->connect_timeout_s,
        "-c statement_timeout=2000 -c synchronous_commit=off " DB_PLANNER_OPTIONS, err, sizeof err);
    PGresult *r = pg ? PQexec(pg, "LISTEN rydes_mq; LISTEN rydes_topics") : NULL;
    if (pg && PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, sizeof err, "LISTEN: %s", PQresultErrorMessage(r));
        PQfinish(pg);
        pg = NULL;
    }
    PQclear(r);
    pthread_mutex_lock(&j->mu);
    j->pg = pg;
    memcpy(j->err, err, sizeof err);
    j->done = true;
    /* under mu: once abandoned, the hub may close the pipe's other end (a write would raise
     * SIGPIPE) */
    if (!j->abandoned && write(j->notify_fd, "c", 1) < 0) {
        /* the pipe is full: the hub is being woken anyway */
    }
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return NULL;
}

/* Begins opening a connection on a thread of its own. */
static void connect_begin(struct mq_hub *h)
{
    struct connect_job *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 2;
    j->notify_fd = fcntl(h->pipe_wr, F_DUPFD_CLOEXEC, 0);
    j->conninfo = xstrdup(h->conninfo);
    j->connect_timeout_s = h->connect_timeout_s;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (j->notify_fd < 0 || pthread_create(&t, &attr, connect_main, j) != 0) {
        j->refs = 1; /* no thread: try again later */
        job_release(j);
        h->next_connect_us = clock_mono_us() + HUB_RETRY_US;
    } else {
        h->connecting = j;
    }
    pthread_attr_destroy(&attr);
}

/* Takes the outcome of the connection being opened, if it is done. */
static void connect_collect(struct mq_hub *h)
{
    struct connect_job *j = h->connecting;
    pthread_mutex_lock(&j->mu);
    bool done = j->done;
    PGconn *pg = j->pg;
    j->pg = NULL;
    if (done && !pg && !h->connect_failing) /* once an outage: the pool reports it too */
        log_warn("long-poll hub cannot connect: %s", j->err);
    pthread_mutex_unlock(&j->mu);
    if (!done)
        return;
    h->connecting = NULL;
    h->connect_failing = !pg;
    job_release(j);
    h->next_connect_us = clock_mono_us() + HUB_RETRY_US; /* if it failed */
    if (pg)
        hub_connected(h, pg);
}

/* The hub stops: the thread opening a connection closes it when it is done. */
static void connect_abandon(struct mq_hub *h)
{
    struct connect_job *j = h->connecting;
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    j->abandoned = true;
    pthread_mutex_unlock(&j->mu);
    h->connecting = NULL;
    job_release(j);
}

static void drain_notifications(struct mq_hub *h)
{
    if (!PQconsumeInput(h->pg)) {
        log_warn("long-poll hub lost its database connection: %s", PQerrorMessage(h->pg));
        atomic_store(&h->listening, false);
        PQfinish(h->pg);
        h->pg = NULL;
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(h->pg))) {
        if (strcmp(n->relname, "rydes_topics") == 0) {
            topics_changed(h, atoi(n->extra));
            PQfreemem(n);
            continue;
        }
        int queue_id = atoi(n->extra);
        atomic_fetch_add(&h->seq[(unsigned)queue_id % HUB_SEQ_SLOTS], 1);
        wake_one(h, queue_id);
        PQfreemem(n);
    }
}

/* The queues with waiters: a new array in *ids (the caller frees it); returns how many. */
static int waiting_queues(struct mq_hub *h, int **ids)
{
    int n = 0;
    pthread_mutex_lock(&h->mu);
    *ids = xmalloc((h->qused ? h->qused : 1) * sizeof **ids);
    for (size_t i = 0; i < h->qcap; i++)
        if (h->queues[i].queue_id && h->queues[i].waiters > 0)
            (*ids)[n++] = h->queues[i].queue_id;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* When queue_id was announced (0: not), or -1 when nobody waits on it any more. */
static int64_t announced_at(struct mq_hub *h, int queue_id)
{
    pthread_mutex_lock(&h->mu);
    struct hub_queue *q = queue_find(h, queue_id);
    int64_t at = q && q->waiters > 0 ? q->announced_us : -1;
    pthread_mutex_unlock(&h->mu);
    return at;
}

static void set_announced(struct mq_hub *h, int queue_id, int64_t at_us)
{
    pthread_mutex_lock(&h->mu);
    queue_get(h, queue_id)->announced_us = at_us;
    pthread_mutex_unlock(&h->mu);
}

/* ids[0..n) as an int[] literal into out. */
static void int_array(struct buf *out, const int *ids, int n)
{
    buf_puts(out, "{");
    for (int i = 0; i < n; i++)
        buf_printf(out, "%s%d", i ? "," : "", ids[i]);
    buf_puts(out, "}");
}

/* Announces, or renews, queues ids[0..n) in one statement. */
static bool upsert_listeners(struct mq_hub *h, const int *ids, int n)
{
    struct buf arr;
    buf_init(&arr);
    int_array(&arr, ids, n);
    const char *v[] = {buf_str(&arr), h->listener};
    PGresult *r = PQexecParams(h->pg,
                               "INSERT INTO queue_listeners (queue_id, listener, until) "
                               "SELECT q, $2, now() + interval '" HUB_ANNOUNCE_TTL " seconds' "
                               "FROM unnest($1::int[]) AS q "
                               "ON CONFLICT (queue_id, listener) DO UPDATE SET until = "
                               "EXCLUDED.until",
                               2, NULL, v, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    buf_cleanup(&arr);
    return ok;
}

/* Of queues ids[0..n), wakes a waiter of each that has a visible message: one statement. */
static void wake_visible(struct mq_hub *h, const int *ids, int n)
{
    struct buf arr;
    buf_init(&arr);
    int_array(&arr, ids, n);
    const char *v[] = {buf_str(&arr)};
    PGresult *r = PQexecParams(h->pg,
                               "SELECT q FROM unnest($1::int[]) AS q WHERE EXISTS (SELECT 1 "
                               "FROM messages m WHERE m.queue_id = q AND m.visible_at <= now())",
                               1, NULL, v, NULL, NULL, 0);
    buf_cleanup(&arr);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(r); i++)
            wake_one(h, atoi(PQgetvalue(r, i, 0)));
    PQclear(r);
}

/* Between the statements of a check: takes the notifications that arrived meanwhile (a topic
 * changed: other processes' publishes must not wait for the whole check to see it), and answers
 * the waiters whose deadline passed, at most every HUB_EXPIRE_EVERY_US (*at: when it last did).
 * On a slow database each statement may take the hub's statement timeout. May drop the
 * connection (h->pg NULL). */
static void expire_meanwhile(struct mq_hub *h, int64_t *at)
{
    drain_notifications(h);
    int64_t now = clock_mono_us();
    if (now - *at >= HUB_EXPIRE_EVERY_US) {
        *at = now;
        expire(h, now);
    }
}

/* Makes sure every queue with waiters is announced in queue_listeners (renewed every
 * HUB_ANNOUNCE_US). A message sent before the announcement landed, or before every sender
 * knew of it, sent no notification: a queue announced afresh is looked at by the check's pass
 * that follows and again HUB_ANNOUNCE_SETTLE_US later, which wake a waiter where a message is
 * visible. Its waiters are not woken to look again themselves: hundreds of queues announced
 * at once (a restart, a reconnect) sent every waiter to the pool at the same moment. */
static void announce(struct mq_hub *h, const int *ids, int n, int64_t now, int64_t *expired_at)
{
    int *due = xmalloc((n ? (size_t)n : 1) * sizeof *due), ndue = 0;
    bool fresh = false;
    for (int i = 0; i < n; i++) {
        int64_t at = announced_at(h, ids[i]);
        if (at >= 0 && (!at || now - at >= HUB_ANNOUNCE_US)) {
            fresh |= !at;
            due[ndue++] = ids[i];
        }
    }
    for (int at = 0; at < ndue && h->pg; at += HUB_CHUNK) {
        int k = ndue - at < HUB_CHUNK ? ndue - at : HUB_CHUNK;
        expire_meanwhile(h, expired_at);
        if (!h->pg || !upsert_listeners(h, due + at, k))
            continue;
        for (int i = 0; i < k; i++)
            set_announced(h, due[at + i], now);
    }
    free(due);
    /* senders learn of an announcement within HUB_LISTEN_REFRESH_US and until then send
     * without NOTIFY: look for such messages again once they all know */
    if (fresh && h->next_check_us > now + HUB_ANNOUNCE_SETTLE_US)
        h->next_check_us = now + HUB_ANNOUNCE_SETTLE_US;
    pthread_mutex_lock(&h->mu); /* forget queues nobody waits on any more */
    queue_forget(h, now, HUB_ANNOUNCE_US * 2);
    pthread_mutex_unlock(&h->mu);
}

/* Once a second: wake a waiter of every queue that has a visible message (a delayed message
 * came due or a lease ran out; neither sends a notification). Deadlines that pass meanwhile are
 * answered between the statements (expire_meanwhile). */
static void check_visible(struct mq_hub *h)
{
    int *ids;
    int n = waiting_queues(h, &ids);
    PQsetnonblocking(h->pg, 0);
    int64_t expired_at = clock_mono_us();
    announce(h, ids, n, expired_at, &expired_at);
    for (int at = 0; at < n && h->pg; at += HUB_CHUNK) {
        expire_meanwhile(h, &expired_at);
        if (h->pg)
            wake_visible(h, ids + at, n - at < HUB_CHUNK ? n - at : HUB_CHUNK);
    }
    free(ids);
    if (h->pg)
        PQsetnonblocking(h->pg, 1);
}

/* Reads which queues some process has long polls waiting on (queue_listeners) into the bitmap
 * senders consult (mq_hub_listened). */
static void refresh_listened(struct mq_hub *h, int64_t now)
{
    PQsetnonblocking(h->pg, 0);
    PGresult *r =
        PQexec(h->pg, "SELECT DISTINCT queue_id FROM queue_listeners WHERE until > now()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        uint64_t bits[HUB_LISTEN_BITS / 64] = {0};
        for (int i = 0; i < PQntuples(r); i++) {
            unsigned b = (unsigned)atoi(PQgetvalue(r, i, 0)) % HUB_LISTEN_BITS;
            bits[b / 64] |= 1ULL << (b % 64);
        }
        for (int w = 0; w < HUB_LISTEN_BITS / 64; w++)
            atomic_store(&h->listened[w], bits[w]);
        atomic_store(&h->listened_at_us, now);
    }
    PQclear(r);
    if (h->pg && PQstatus(h->pg) == CONNECTION_OK)
        PQsetnonblocking(h->pg, 1);
}

bool mq_hub_listened(struct mq_hub *h, int queue_id)
{
    if (clock_mono_us() - atomic_load(&h->listened_at_us) > HUB_LISTEN_STALE_US)
        return true; /* not known lately: notify, to be safe */
    unsigned b = (unsigned)queue_id % HUB_LISTEN_BITS;
    return (atomic_load(&h->listened[b / 64]) >> (b % 64)) & 1;
}

/* Did a waiter come for a queue not announced (on this connection)? Clears the flag: the check
 * that follows announces every queue that has waiters then (renewals wait for the next
 * once-a-second check; an announcement lives HUB_ANNOUNCE_TTL, three renewals). */
static bool take_fresh(struct mq_hub *h)
{
    pthread_mutex_lock(&h->mu);
    bool fresh = h->fresh;
    h->fresh = false;
    pthread_mutex_unlock(&h->mu);
    return fresh;
}

static int poll_timeout_ms(int64_t now, int64_t earliest, int64_t next_check)
{
    int64_t until = earliest < next_check ? earliest : next_check;
    int64_t ms = (until - now + 999) / 1000;
    return ms < 0 ? 0 : (ms > 1000 ? 1000 : (int)ms);
}

/* A step without a connection: begin one when it is time, wait for it (the self-pipe, which
 * it writes when done) until a waiter's deadline at most, take it when it is done. */
static void hub_step_offline(struct mq_hub *h, int64_t now, int64_t earliest)
{
    if (!h->connecting && now >= h->next_connect_us)
        connect_begin(h);
    struct pollfd p = {.fd = h->pipe_rd, .events = POLLIN};
    poll(&p, 1,
         poll_timeout_ms(now, earliest, h->connecting ? now + HUB_RETRY_US : h->next_connect_us));
    char buf[64]; /* emptied before looking: a wake-up written after the look stays for the poll */
    while (read(h->pipe_rd, buf, sizeof buf) > 0) {
    }
    if (h->connecting)
        connect_collect(h);
}

static void hub_step(struct mq_hub *h)
{
    int64_t now = clock_mono_us();
    int64_t earliest = expire(h, now);
    if (!h->pg) {
        hub_step_offline(h, now, earliest);
    } else {
        if (take_fresh(h) || now >= h->next_check_us) {
            h->next_check_us = now + HUB_CHECK_INTERVAL_US;
            check_visible(h); /* may bring next_check_us forward (a fresh announcement) */
        }
        if (h->pg && now >= h->next_listen_us) {
            refresh_listened(h, now);
            h->next_listen_us = now + HUB_LISTEN_REFRESH_US;
        }
        if (!h->pg)
            return;
        /* notifications that arrived while the queries above ran sit in libpq already */
        drain_notifications(h);
        if (!h->pg)
            return;
        now = clock_mono_us(); /* the queries above may have taken seconds */
        earliest = expire(h, now);
        struct pollfd p[2] = {{.fd = PQsocket(h->pg), .events = POLLIN},
                              {.fd = h->pipe_rd, .events = POLLIN}};
        int64_t wake = h->next_check_us < h->next_listen_us ? h->next_check_us : h->next_listen_us;
        poll(p, 2, poll_timeout_ms(now, earliest, wake));
        drain_notifications(h);
    }
    char buf[64];
    while (read(h->pipe_rd, buf, sizeof buf) > 0) {
    }
}

static void *hub_main(void *arg)
{
    struct mq_hub *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        bool stop = h->stopping;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            break;
        hub_step(h);
    }
    if (h->pg) {
        const char *v[] = {h->listener};
        PQsetnonblocking(h->pg, 0);
        PQclear(PQexecParams(h->pg, "DELETE FROM queue_listeners WHERE listener = $1", 1, NULL, v,
                             NULL, NULL, 0));
        PQfinish(h->pg);
    }
    connect_abandon(h);
    return NULL;
}

struct mq_hub *mq_hub_start(const char *conninfo, int connect_timeout_s, int max_waiters,
                            void (*on_topics)(void *ctx, int topic_id), void *ctx)
{
    struct mq_hub *h = xcalloc(1, sizeof *h);
    h->on_topics = on_topics;
    h->on_topics_ctx = ctx;
    atomic_init(&h->listening, false);
    h->conninfo = xstrdup(conninfo);
    h->connect_timeout_s = connect_timeout_s;
    h->max_waiters = max_waiters;
    for (h->qcap = 64; h->qcap < (size_t)(max_waiters > 0 ? max_waiters : 1) * 2; h->qcap *= 2) {
    }
    h->queues = xcalloc(h->qcap, sizeof *h->queues);
    h->heap = xcalloc(max_waiters > 0 ? (size_t)max_waiters : 1, sizeof *h->heap);
    pthread_mutex_init(&h->mu, NULL);
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        log_error("pipe: %s", strerror(errno));
        abort();
    }
    h->pipe_rd = fds[0];
    h->pipe_wr = fds[1];
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(h->listener, sizeof h->listener, "%s:%d:%lld", host, (int)getpid(),
             (long long)clock_wall_us());
    xthread_create(&h->thread, hub_main, h);
    return h;
}

void mq_hub_request_stop(struct mq_hub *h)
{
    pthread_mutex_lock(&h->mu);
    bool already = h->stopping;
    h->stopping = true;
    pthread_mutex_unlock(&h->mu);
    if (already)
        return;
    /* no waiter registers once stopping is set */
    wake_all(h, MQ_WAKE_SHUTDOWN);
    interrupt(h);
}

void mq_hub_shutdown(struct mq_hub *h)
{
    mq_hub_request_stop(h);
    if (!h->joined) { /* the thread may be in a statement for seconds (a stalled database) */
        pthread_join(h->thread, NULL);
        h->joined = true;
    }
}

void mq_hub_free(struct mq_hub *h)
{
    if (!h)
        return;
    mq_hub_shutdown(h);
    close(h->pipe_rd);
    close(h->pipe_wr);
    pthread_mutex_destroy(&h->mu);
    free(h->queues);
    free(h->heap);
    free(h->conninfo);
    free(h);
}

uint64_t mq_hub_seq(struct mq_hub *h, int queue_id)
{
    return atomic_load(&h->seq[(unsigned)queue_id % HUB_SEQ_SLOTS]);
}

enum mq_wait_result mq_hub_wait(struct mq_hub *h, struct mq_waiter *w, uint64_t seq)
{
    pthread_mutex_lock(&h->mu);
    if (h->stopping || h->nwaiters >= h->max_waiters) {
        enum mq_wait_result r = h->stopping ? MQ_WAIT_STOPPING : MQ_WAIT_FULL;
        pthread_mutex_unlock(&h->mu);
        return r;
    }
    struct hub_queue *q = queue_get(h, w->queue_id);
    link_waiter(h, q, w);
    bool missed = atomic_load(&h->seq[(unsigned)w->queue_id % HUB_SEQ_SLOTS]) != seq;
    /* the hub sleeps until the earliest deadline, and announces a queue at once */
    bool tell = !missed && (h->heap[0] == w || !q->announced_us);
    h->fresh |= tell && !q->announced_us;
    struct mq_waiter *woken = NULL;
    if (missed)
        take(h, w, &woken);
    pthread_mutex_unlock(&h->mu);
    if (missed)
        deliver(woken, MQ_WAKE_MESSAGE);
    else if (tell)
        interrupt(h);
    return MQ_WAIT_OK;
}

void mq_hub_poke(struct mq_hub *h, int queue_id)
{
    wake_one(h, queue_id);
}

bool mq_hub_listened_cb(void *hub, int queue_id)
{
    return mq_hub_listened(hub, queue_id);
}

bool mq_hub_listening(struct mq_hub *h)
{
    return atomic_load(&h->listening);
}

int mq_hub_waiters(struct mq_hub *h)
{
    pthread_mutex_lock(&h->mu);
    int n = h->nwaiters;
    pthread_mutex_unlock(&h->mu);
    return n;
}
