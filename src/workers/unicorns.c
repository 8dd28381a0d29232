/* The simulated unicorn fleet: RYDES_UNICORNS unicorns, each an ordinary consumer of its queue
 * rfq-unicorn-NAME (subscribed to rfq-requests by the topology). For every request a unicorn
 * decides, deterministically from the RFQ id and its name, whether it answers
 * (RYDES_UNICORN_ANSWER_PERCENT), how long it takes (RYDES_UNICORN_{MIN,MAX}_LATENCY_MS), its
 * price (RYDES_UNICORN_{MIN,MAX}_PRICE) and goodies; it acks the request and a sender thread
 * posts the quote into the request's return address (attribute return_address) with the
 * request's correlation id when it is due. Pending answers live in memory: a process that dies
 * loses them, as a real provider that crashed would. */
#include "rydes/rfqs.h"
#include "rydes/services.h"

#include "rydes/log.h"
#include "rydes/mem.h"
#include "rydes/trace.h"
#include "rydes/worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLEET_IDLE_MS     100     /* the sender looks at least this often */
#define FLEET_MAX_PENDING 100000  /* answers waiting at once (~35 MB); more requests wait too */
#define FLEET_RETRY_US    1000000 /* an answer that found no connection goes again after this */

struct unicorn {
    struct fleet *fleet;
    char name[64];
    char queue[96];
    struct consumer_def def;
    struct consumer *consumer;
};

struct answer {
    int64_t due_us;      /* monotonic: a step of the wall clock moves no answer */
    int64_t given_up_us; /* no RFQ waits for it after this: the first due + the longest timeout */
    char rfq[IDS_UUID_LEN];
    char unicorn[64];
    char return_address[MQ_NAME_MAX + 1];
    double price;
    unsigned goodies;   /* a bit per goodie */
    struct trace trace; /* of the request: the quote carries it on */
};

struct fleet {
    const struct config *cfg;
    struct consumer_env env;
    struct unicorn *unicorns;
    int n;
    pthread_mutex_t mu;
    struct answer *heap; /* a min-heap by due_us */
    int len, cap;
    struct worker *sender;
};

static const char *const goodie_names[] = {"bottled water", "phone charger", "snacks",
                                           "unicorn stickers"};

/* FNV-1a of the RFQ id and the unicorn's name: the unicorn's "mood" for this request. */
static uint64_t mood(const char *rfq, const char *unicorn)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = rfq; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const char *p = unicorn; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static void heap_push(struct fleet *f, const struct answer *a)
{
    if (f->len == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->heap = xrealloc(f->heap, (size_t)f->cap * sizeof *f->heap);
    }
    int i = f->len++;
    while (i > 0 && f->heap[(i - 1) / 2].due_us > a->due_us) {
        f->heap[i] = f->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    f->heap[i] = *a;
}

static struct answer heap_pop(struct fleet *f)
{
    struct answer top = f->heap[0], last = f->heap[--f->len];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= f->len)
            break;
        if (c + 1 < f->len && f->heap[c + 1].due_us < f->heap[c].due_us)
            c++;
        if (f->heap[c].due_us >= last.due_us)
            break;
        f->heap[i] = f->heap[c];
        i = c;
    }
    if (f->len)
        f->heap[i] = last;
    return top;
}

static const char *attribute(const struct mq_message *m, const char *name)
{
    return json_string_value(json_object_get(json_object_get(m->attributes, name), "value"));
}

/* Decides the unicorn's answer to request m and schedules it. */
static enum consumer_result consider(const struct consumer_env *env, struct db_conn *c,
                                     const struct mq_message *m, char *why, size_t n)
{
    (void)c;
    struct unicorn *u = env->ctx;
    const struct config *cfg = u->fleet->cfg;
    const char *rfq = attribute(m, "correlation_id"), *to = attribute(m, "return_address");
    if (!rfq || !ids_is_uuid(rfq) || !to || strlen(to) > MQ_NAME_MAX)
        return CONSUMER_DONE; /* not a request we can answer */
    uint64_t h = mood(rfq, u->name);
    if (h % 100 >= (uint64_t)cfg->unicorn_answer_percent)
        return CONSUMER_DONE; /* this unicorn stays silent */
    pthread_mutex_lock(&u->fleet->mu);
    bool full = u->fleet->len >= FLEET_MAX_PENDING;
    pthread_mutex_unlock(&u->fleet->mu);
    if (full) /* a flood of requests: they wait in the queue, not in memory */
        return CONSUMER_DEFER;
    int64_t lo = cfg->unicorn_min_latency_ms, hi = cfg->unicorn_max_latency_ms;
    int64_t latency_ms = lo + (hi > lo ? (int64_t)((h >> 8) % (uint64_t)(hi - lo + 1)) : 0);
    int64_t pmin = cfg->unicorn_min_price * 100, pmax = cfg->unicorn_max_price * 100;
    int64_t cents = pmin + (pmax > pmin ? (int64_t)((h >> 24) % (uint64_t)(pmax - pmin)) : 0);
    int64_t due_us = clock_mono_us() + latency_ms * 1000;
    struct answer a = {.due_us = due_us,
                       .given_up_us = due_us + (int64_t)RFQS_TIMEOUT_MAX * 1000000,
                       .price = (double)cents / 100,
                       .goodies = (unsigned)(h >> 48) & 0xf};
    snprintf(a.rfq, sizeof a.rfq, "%s", rfq);
    snprintf(a.unicorn, sizeof a.unicorn, "%s", u->name);
    snprintf(a.return_address, sizeof a.return_address, "%s", to);
    if (trace_current())
        a.trace = *trace_current();
    pthread_mutex_lock(&u->fleet->mu);
    heap_push(u->fleet, &a);
    pthread_mutex_unlock(&u->fleet->mu);
    worker_wake(u->fleet->sender);
    return CONSUMER_DONE;
}

/* Is an answer done with after st: posted, or with nowhere to go (its return address gone, or
 * refusing it)? Not when the database failed: then it goes again. */
static bool settled(enum mq_status st)
{
    return st != MQ_UNAVAILABLE && st != MQ_BUSY && st != MQ_ERROR;
}

/* Posts one answer into its return address; false when it is to go again (settled). */
static bool post(struct fleet *f, struct db_conn *c, const struct answer *a)
{
    struct mq_queue q;
    enum mq_status st = mq_queue_get(c, a->return_address, &q);
    if (st != MQ_OK)
        return settled(st);
    json_t *goodies = json_array();
    for (unsigned i = 0; i < 4; i++)
        if (a->goodies & (1u << i))
            json_array_append_new(goodies, json_string(goodie_names[i]));
    struct quote_input in = {.unicorn = a->unicorn, .price = a->price, .goodies = goodies};
    st = rfqs_enqueue_quote(c, &q, a->rfq, &in, mq_hub_listened(f->env.hub, q.id));
    json_decref(goodies);
    return settled(st);
}

/* Puts a back to go again a second from now, unless its RFQ is over by then whatever its
 * timeout was (a database away for minutes): then it is dropped. */
static void again(struct fleet *f, struct answer *a)
{
    a->due_us = clock_mono_us() + FLEET_RETRY_US;
    if (a->due_us > a->given_up_us) {
        log_warn("unicorn-fleet: %s's answer to RFQ %s could not be sent for 300 s: dropped",
                 a->unicorn, a->rfq);
        return;
    }
    pthread_mutex_lock(&f->mu);
    heap_push(f, a);
    pthread_mutex_unlock(&f->mu);
}

static int send_step(struct worker *w, void *arg)
{
    struct fleet *f = arg;
    int64_t now = clock_mono_us();
    int wait_ms = FLEET_IDLE_MS;
    while (!worker_stopping(w)) { /* answers still due are lost with the process, as documented */
        pthread_mutex_lock(&f->mu);
        bool due = f->len && f->heap[0].due_us <= now;
        struct answer a = due ? heap_pop(f) : (struct answer){0};
        if (!due && f->len && (f->heap[0].due_us - now) / 1000 < wait_ms)
            wait_ms = (int)((f->heap[0].due_us - now) / 1000) + 1;
        pthread_mutex_unlock(&f->mu);
        if (!due)
            return wait_ms;
        enum db_acquire_error why;
        struct db_conn *c = db_pool_acquire(f->env.pool, f->env.acquire_timeout_ms, &why);
        if (!c) { /* the pool is busy or the database away: the answer goes a little later */
            again(f, &a);
            return FLEET_IDLE_MS;
        }
        trace_set(a.trace.request_id, a.trace.traceparent);
        bool posted = post(f, c, &a);
        trace_set(NULL, NULL);
        db_pool_release(f->env.pool, c);
        if (!posted) { /* a statement failed: the database is likely away, so pause too */
            again(f, &a);
            return FLEET_IDLE_MS;
        }
    }
    return FLEET_IDLE_MS;
}

struct fleet *fleet_start(const struct config *cfg, const struct consumer_env *env)
{
    struct fleet *f = xcalloc(1, sizeof *f);
    f->cfg = cfg;
    f->env = *env;
    f->n = (int)cfg->unicorns;
    f->unicorns = xcalloc((size_t)f->n + 1, sizeof *f->unicorns);
    pthread_mutex_init(&f->mu, NULL);
    f->sender = worker_start(send_step, f);
    for (int i = 0; i < f->n; i++) {
        struct unicorn *u = &f->unicorns[i];
        u->fleet = f;
        rfqs_unicorn_name(i, u->name, sizeof u->name);
        snprintf(u->queue, sizeof u->queue, RFQS_UNICORN_QUEUE "%s", u->name);
        u->def = (struct consumer_def){.name = "unicorn-fleet",
                                       .queue = u->queue,
                                       .batch = 10,
                                       .visibility = 30,
                                       .handle = consider};
        struct consumer_env e = *env;
        e.ctx = u;
        u->consumer = consumer_start(&u->def, &e);
    }
    return f;
}

void fleet_totals(const struct fleet *f, struct consumer_totals *t)
{
    for (int i = 0; i < f->n; i++)
        consumer_totals_add(t, f->unicorns[i].consumer);
}

void fleet_request_stop(struct fleet *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        consumer_request_stop(f->unicorns[i].consumer);
    worker_request_stop(f->sender);
}

void fleet_stop(struct fleet *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        consumer_stop(f->unicorns[i].consumer);
    worker_stop(f->sender);
    pthread_mutex_destroy(&f->mu);
    free(f->heap);
    free(f->unicorns);
    free(f);
}
