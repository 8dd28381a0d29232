/* HTTP metrics: request counts by route, method and status, and a latency histogram by route
 * and status, kept in lock-free counters indexed by route (the route table is static) and a
 * small set of status slots. Rendered in the Prometheus text format by metrics_render. */
#ifndef RYDES_METRICS_H
#define RYDES_METRICS_H

#include "rydes/buf.h"
#include "rydes/router.h"

#include <stddef.h>
#include <stdint.h>

struct metrics;

/* Creates counters for the routes of table (one extra slot counts unmatched requests). Free
 * with metrics_free. The table must outlive the metrics. */
struct metrics *metrics_create(const struct route *table, size_t nroutes);
void metrics_free(struct metrics *m);
/* Records one finished request. route_index is -1 for requests that matched no route. */
void metrics_record(struct metrics *m, int route_index, int status, int64_t duration_us);
/* Appends the HTTP series to out. */
void metrics_render(const struct metrics *m, struct buf *out);

#endif
