/* The sweeper: a background thread per process that deletes messages past their retention and
 * expired FIFO deduplication ids in small batches, and measures queue depths for /metrics and
 * deep queues. Only one process sweeps at a time (a transaction-level advisory lock); the
 * others skip their turn. Likewise one measures: the measurer sets when anyone may measure
 * next (sweep_cursors 'depths': 5 s on, or 20 times what the measurement cost). A sweep that
 * deleted a batch's worth of messages and dedup ids is followed by the next one at once, so
 * that those keep up with producers faster than a batch per interval. */
#ifndef RYDES_MQ_SWEEPER_H
#define RYDES_MQ_SWEEPER_H

struct mq_sweeper;

/* Starts the thread: a sweep every interval_ms, a depth measurement at most every few seconds
 * (less often when measuring takes long), and after each sweep the statement extra (static
 * storage, or NULL): the sweep of layers above the engine. Stop and free with
 * mq_sweeper_stop. */
struct mq_sweeper *mq_sweeper_start(const char *conninfo, int connect_timeout_s, int interval_ms,
                                    const char *extra);
/* Asks the thread to stop without waiting (mq_sweeper_stop then waits). NULL is fine. */
void mq_sweeper_request_stop(struct mq_sweeper *s);
void mq_sweeper_stop(struct mq_sweeper *s);
/* The libpq options of the sweeper's connection (tests sweep on one like it): a statement
 * timeout, read committed, the pool's planner settings (index scans), and each statement
 * planned afresh for the tables as they are, not a plan cached while a table was empty
 * (plan_cache_mode=force_custom_plan). */
extern const char mq_sweeper_options[];
/* Runs one sweep on pg right now (tests); returns the number of rows deleted or -1. */
long long mq_sweep_once(void *pg);
/* Measures the depths on pg unless another process is measuring or its turn has not come
 * (sweep_cursors 'depths'): 1 measured, 0 not, -1 failed. */
int mq_measure_once(void *pg);

#endif
