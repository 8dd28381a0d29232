/* HTTP request metrics; see include/rydes/metrics.h.
 *
 * Counters are _Atomic and updated with relaxed ordering: a scrape may see a request counted in
 * the total a moment before it shows in a bucket, which Prometheus tolerates. Status codes map
 * to a fixed slot list so memory is bounded (routes x slots x buckets) and nothing allocates on
 * the request path. */
#include "rydes/metrics.h"

#include "rydes/mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int status_slots[] = {200, 201, 202, 204, 304, 400, 401, 403, 404,
                                   405, 409, 413, 415, 422, 429, 500, 503, 0 /* other */};
#define NSLOTS (sizeof status_slots / sizeof status_slots[0])

/* Upper bounds of the latency buckets, in seconds (le labels); +Inf is implicit. */
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,   0.5,   1,      2.5,   5,    10,    30};
#define NBUCKETS (sizeof bucket_le / sizeof bucket_le[0])

struct series {
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
    _Atomic uint64_t buckets[NBUCKETS]; /* non-cumulative; summed when rendered */
};

struct metrics {
    const struct route *table;
    size_t nroutes;
    struct series *series; /* (nroutes + 1) x NSLOTS; the last route row is "unmatched" */
};

struct metrics *metrics_create(const struct route *table, size_t nroutes)
{
    struct metrics *m = xcalloc(1, sizeof *m);
    m->table = table;
    m->nroutes = nroutes;
    m->series = xcalloc((nroutes + 1) * NSLOTS, sizeof *m->series);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    free(m->series);
    free(m);
}

static size_t slot_of(int status)
{
    for (size_t i = 0; i + 1 < NSLOTS; i++)
        if (status_slots[i] == status)
            return i;
    return NSLOTS - 1;
}

void metrics_record(struct metrics *m, int route_index, int status, int64_t duration_us)
{
    size_t row = route_index < 0 ? m->nroutes : (size_t)route_index;
    struct series *s = &m->series[row * NSLOTS + slot_of(status)];
    uint64_t us = duration_us < 0 ? 0 : (uint64_t)duration_us;
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
    for (size_t b = 0; b < NBUCKETS; b++) {
        if ((double)us <= bucket_le[b] * 1e6) {
            atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
            break;
        }
    }
}

static void render_labels(const struct metrics *m, size_t row, size_t slot, char *out, size_t n)
{
    const char *route = row < m->nroutes ? m->table[row].pattern : "unmatched";
    const char *method = row < m->nroutes ? m->table[row].method : "any";
    if (status_slots[slot])
        snprintf(out, n, "route=\"%s\",method=\"%s\",status=\"%d\"", route, method,
                 status_slots[slot]);
    else
        snprintf(out, n, "route=\"%s\",method=\"%s\",status=\"other\"", route, method);
}

static void render_series(const struct series *s, const char *labels, struct buf *out)
{
    uint64_t cumulative = 0;
    for (size_t b = 0; b < NBUCKETS; b++) {
        cumulative += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
        buf_printf(out, "rydes_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n", labels,
                   bucket_le[b], (unsigned long long)cumulative);
    }
    /* read after the buckets, and never below them: a request recorded meanwhile must not
     * leave +Inf under the last bucket */
    uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    count = count > cumulative ? count : cumulative;
    buf_printf(out, "rydes_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n", labels,
               (unsigned long long)count);
    buf_printf(out, "rydes_http_request_duration_seconds_sum{%s} %.6f\n", labels,
               (double)atomic_load_explicit(&s->sum_us, memory_order_relaxed) / 1e6);
    buf_printf(out, "rydes_http_request_duration_seconds_count{%s} %llu\n", labels,
               (unsigned long long)count);
}

void metrics_render(const struct metrics *m, struct buf *out)
{
    char labels[512];
    buf_puts(out, "# HELP rydes_http_requests_total HTTP requests answered, by route, method "
                  "and status.\n# TYPE rydes_http_requests_total counter\n");
    for (size_t row = 0; row <= m->nroutes; row++) {
        for (size_t slot = 0; slot < NSLOTS; slot++) {
            uint64_t c =
                atomic_load_explicit(&m->series[row * NSLOTS + slot].count, memory_order_relaxed);
            if (!c)
                continue;
            render_labels(m, row, slot, labels, sizeof labels);
            buf_printf(out, "rydes_http_requests_total{%s} %llu\n", labels, (unsigned long long)c);
        }
    }
    buf_puts(out, "# HELP rydes_http_request_duration_seconds Time from the request line to "
                  "the queued reply.\n# TYPE rydes_http_request_duration_seconds histogram\n");
    for (size_t row = 0; row <= m->nroutes; row++) {
        for (size_t slot = 0; slot < NSLOTS; slot++) {
            const struct series *s = &m->series[row * NSLOTS + slot];
            if (!atomic_load_explicit(&s->count, memory_order_relaxed))
                continue;
            render_labels(m, row, slot, labels, sizeof labels);
            render_series(s, labels, out);
        }
    }
}
