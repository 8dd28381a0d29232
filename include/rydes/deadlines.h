/* Request and reply deadlines against slow clients (slowloris, and its mirror image, the slow
 * reader). libmicrohttpd's connection timeout is an idle timeout: a client that sends one byte,
 * or reads a few, just often enough keeps a connection, and with it a slot of the connection
 * limit, for ever. So every connection is watched from the moment it is accepted (or its
 * previous request was answered) until its request has fully arrived, headers and body, and
 * again from when its reply is queued until the reply has gone out; a watchdog thread shuts
 * down the socket of any connection past its deadline. Idle keep-alive connections and
 * requests being handled (a long poll) are left alone. */
#ifndef RYDES_DEADLINES_H
#define RYDES_DEADLINES_H

#include <stddef.h>

struct deadlines;
struct deadline_watch;

/* Starts the watchdog (checks twice a second); free with deadlines_stop. A connection gets
 * request_timeout_s for its first request, and idle_timeout_s + request_timeout_s after each
 * answer for its next one. */
struct deadlines *deadlines_start(int request_timeout_s, int idle_timeout_s);
void deadlines_stop(struct deadlines *d);

/* Watches the connection on fd from now on: it is waiting for a request. Returns the watch
 * (owned by d until deadlines_forget). */
struct deadline_watch *deadlines_watch(struct deadlines *d, int fd);
/* The connection's request has arrived (headers and body): no deadline until the next one. */
void deadlines_arrived(struct deadlines *d, struct deadline_watch *w);
/* A reply of bytes bytes was queued: it must have gone out within the request timeout for every
 * started MiB (a client reading slower than about 1 MiB per timeout is cut off). */
void deadlines_replying(struct deadlines *d, struct deadline_watch *w, size_t bytes);
/* The request was answered: the connection waits for its next request from now on. */
void deadlines_waiting(struct deadlines *d, struct deadline_watch *w);
/* The connection is closing: forget it (before its socket is closed). */
void deadlines_forget(struct deadlines *d, struct deadline_watch *w);
/* Connections shut down for missing their deadline so far. */
unsigned long long deadlines_expired(const struct deadlines *d);

#endif
