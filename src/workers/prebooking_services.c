/* The prebooking services: prebooking-submission turns messages sent straight into its queue
 * into tasks (invalid ones into failed tasks), prebooking-processing makes the prebookings
 * (several consumers per process: RYDES_PREBOOKING_CONCURRENCY), prebooking-datalake records
 * every submission. The work is rydes/prebookings.h; this file adapts it to the consumer loop. */
#include "rydes/prebookings.h"
#include "rydes/services.h"

#include <stdio.h>

static enum consumer_result outcome(enum mq_status st, char *why, size_t n)
{
    if (st != MQ_OK && !why[0])
        snprintf(why, n, "%s",
                 st == MQ_UNAVAILABLE ? "the database is unavailable" : "a statement failed");
    return st == MQ_OK ? CONSUMER_DONE : CONSUMER_RETRY;
}

static enum consumer_result submission(const struct consumer_env *env, struct db_conn *c,
                                       const struct mq_message *m, char *why, size_t n)
{
    enum mq_status st;
    struct topic_set *set = topic_cache_current(env->topics, env->hub, c, PREBOOKINGS_TOPIC, &st);
    if (!set && st == MQ_NOT_FOUND)
        snprintf(why, n, "topic " PREBOOKINGS_TOPIC " does not exist");
    if (set || st == MQ_NOT_FOUND)
        st = prebookings_accept_message(c, set, m, (int)env->cfg->prebooking_horizon_days,
                                        mq_hub_listened_cb, env->hub);
    topic_set_release(set);
    return outcome(st, why, n);
}

/* The submission's message is going to the dead-letter queue: its task is made, failed. */
static void submission_given_up(const struct consumer_env *env, struct db_conn *c,
                                const struct mq_message *m, const char *why)
{
    (void)env;
    prebookings_give_up_submission(c, m, why);
}

static void processing_claimed(const struct consumer_env *env, struct db_conn *c,
                               const struct mq_message *m)
{
    (void)env;
    prebookings_mark_processing(c, m);
}

static enum consumer_result processing(const struct consumer_env *env, struct db_conn *c,
                                       const struct mq_message *m, char *why, size_t n)
{
    return outcome(prebookings_process(c, m, (int)env->cfg->prebooking_slot_minutes, why, n), why,
                   n);
}

/* The task's message is going to the dead-letter queue: the task fails, with the reason. */
static void processing_given_up(const struct consumer_env *env, struct db_conn *c,
                                const struct mq_message *m, const char *why)
{
    (void)env;
    prebookings_give_up(c, m, why);
}

static int processing_threads(const struct config *cfg)
{
    return (int)cfg->prebooking_concurrency;
}

static enum consumer_result datalake(const struct consumer_env *env, struct db_conn *c,
                                     const struct mq_message *m, char *why, size_t n)
{
    (void)env;
    return outcome(prebookings_ingest(c, m, why, n), why, n);
}

const struct consumer_def service_prebooking_submission = {.name = "prebooking-submission",
                                                           .queue = "prebooking-submission",
                                                           .batch = 10,
                                                           .visibility = 30,
                                                           .handle = submission,
                                                           .given_up = submission_given_up};
const struct consumer_def service_prebooking_processing = {.name = "prebooking-processing",
                                                           .queue = "prebooking-processing",
                                                           .batch = 10,
                                                           .visibility = 30,
                                                           .handle = processing,
                                                           .claimed = processing_claimed,
                                                           .given_up = processing_given_up,
                                                           .threads = processing_threads};
const struct consumer_def service_prebooking_datalake = {.name = "prebooking-datalake",
                                                         .queue = "prebooking-datalake",
                                                         .batch = 10,
                                                         .visibility = 30,
                                                         .handle = datalake};
