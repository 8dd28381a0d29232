/* The Wild Rydes topology; see include/rydes/topology.h. The channels are a table; the SQL
 * functions rydes_ensure_queue and rydes_ensure_subscription (sql/005) do the idempotent work. */
#include "rydes/topology.h"

#include "rydes/jsontext.h"
#include "rydes/prebookings.h"
#include "rydes/rfqs.h"
#include "rydes/rides.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "topology" in ASCII: the advisory-lock key serialising concurrent start-ups. */
#define TOPOLOGY_LOCK_KEY "8390880437262575481"

/* Queue subscriptions of topics, each delivering raw into the queue of the same name (which
 * gets a NAME-dlq). policy NULL: unfiltered; "extraordinary": the configured filter. */
static const struct {
    const char *topic, *queue, *policy;
} subscriptions[] = {
    {RIDES_TOPIC, "customer-notification", NULL},
    {RIDES_TOPIC, "customer-loyalty", NULL},
    {RIDES_TOPIC, "datalake-ingestion", NULL},
    {RIDES_TOPIC, "customer-accounting", NULL},
    {RIDES_TOPIC, "extraordinary-rides", "extraordinary"},
    {"prebooking-notification", "prebooking-processing", NULL},
    {"prebooking-notification", "prebooking-datalake", NULL},
    {"fare-processing", "fare-succeeded", "{\"is_successful\": [\"true\"]}"},
    {"fare-processing", "fare-failed", "{\"is_successful\": [\"false\"]}"},
};

/* Queues no topic feeds: apps send into them directly. */
static const char *const standalone_queues[] = {PREBOOKINGS_SUBMISSION_QUEUE, RFQS_RESPONSES};

char *topology_extraordinary_policy(const struct config *cfg)
{
    json_t *p = json_pack("{s:[{s:[s, I]}], s:[{s:[s, I]}]}", "fare", "numeric",
                          ">=", (json_int_t)cfg->extraordinary_fare, "distance", "numeric",
                          ">=", (json_int_t)cfg->extraordinary_distance);
    char *text = jsontext_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(p);
    return text;
}

static bool run(PGconn *pg, const char *sql, int n, const char *const *v, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "topology: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static bool ensure_all(PGconn *pg, const struct config *cfg, char *err, size_t errlen)
{
    if (!run(pg, "SELECT pg_advisory_xact_lock(" TOPOLOGY_LOCK_KEY ")", 0, NULL, err, errlen))
        return false;
    char *extraordinary = topology_extraordinary_policy(cfg);
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof subscriptions / sizeof *subscriptions; i++) {
        const char *p = subscriptions[i].policy;
        const char *policy = !p ? NULL : strcmp(p, "extraordinary") == 0 ? extraordinary : p;
        const char *v[] = {subscriptions[i].topic, subscriptions[i].queue, policy};
        ok = run(pg, "SELECT rydes_ensure_subscription($1, $2, $3::jsonb)", 3, v, err, errlen);
    }
    free(extraordinary);
    for (size_t i = 0; ok && i < sizeof standalone_queues / sizeof *standalone_queues; i++)
        ok = run(pg, "SELECT rydes_ensure_queue($1)", 1, &standalone_queues[i], err, errlen);
    /* the simulated fleet: one queue per unicorn on rfq-requests (the topic exists even with
     * no unicorns, for real providers to subscribe to) */
    const char *topic[] = {RFQS_TOPIC};
    ok = ok && run(pg, "INSERT INTO topics (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", 1,
                   topic, err, errlen);
    for (int i = 0; ok && i < cfg->unicorns; i++) {
        char name[64], queue[80];
        rfqs_unicorn_name(i, name, sizeof name);
        snprintf(queue, sizeof queue, RFQS_UNICORN_QUEUE "%s", name);
        const char *v[] = {RFQS_TOPIC, queue, NULL};
        ok = run(pg, "SELECT rydes_ensure_subscription($1, $2, $3::jsonb)", 3, v, err, errlen);
    }
    return ok;
}

bool topology_ensure(PGconn *pg, const struct config *cfg, char *err, size_t errlen)
{
    /* read committed whatever the database's default: a start-up that waited for another's
     * lock must see what that one made (a later snapshot would refuse to insert over it) */
    if (!run(pg, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, err, errlen))
        return false;
    if (ensure_all(pg, cfg, err, errlen))
        return run(pg, "COMMIT", 0, NULL, err, errlen);
    char ignored[128];
    run(pg, "ROLLBACK", 0, NULL, ignored, sizeof ignored);
    return false;
}
