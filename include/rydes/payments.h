/* The payment gateway and the accounting system the fare saga talks to, as one interface with
 * two implementations: a built-in simulator (default; its ledger is table payment_ledger) and an
 * HTTP client for a real gateway (RYDES_PAYMENT_URL). Every call carries an idempotency key; a
 * gateway that sees a key again answers as it did the first time, so a retried call after a
 * crash never charges twice. An undo may name the call it undoes by that key instead of by a
 * reference (original_key), for calls whose answer was lost. */
#ifndef RYDES_PAYMENTS_H
#define RYDES_PAYMENTS_H

#include "rydes/db.h"

#include <stdbool.h>
#include <stddef.h>

enum pay_op { PAY_PREAUTH, PAY_VOID, PAY_CHARGE, PAY_REFUND, PAY_CREDIT };

enum pay_status {
    PAY_OK,
    PAY_DECLINED,  /* a business error (declined, insufficient funds): do not retry */
    PAY_TRANSIENT, /* timeout, 5xx, connection refused: retry with backoff */
};

struct pay_request {
    const char *key; /* idempotency key */
    const char *fare_id, *customer;
    double amount;
    const char *reference; /* the pre-auth code (void, charge) or the charge id (refund) */
    /* An undo (void, refund) of a call whose answer never came, so reference is NULL: that
     * call's idempotency key. The gateway undoes whatever the key did, or, if it did nothing,
     * makes sure it never will (a late arrival of the original is refused). */
    const char *original_key;
};

struct pay_result {
    char reference[256]; /* the code or id handed back on PAY_OK */
    char detail[256];    /* why, otherwise (or, on PAY_OK without a reference, what happened) */
    bool unsent;         /* PAY_TRANSIENT before a byte of the call left (connection refused or
                          * timed out, no such host, a failed TLS handshake): nothing can have
                          * happened */
    bool foreign;        /* PAY_DECLINED by an answer that may not come from the gateway's handling
                          * of the key (any 4xx but 402: a proxy's 403, a rotated key's 401, a
                          * 404 in front of it): it says nothing of an earlier call's outcome */
};

struct payments;

/* The simulator: failure injection by customer id, as the reference workshop has it: a customer
 * containing _fail_auth, _fail_charge, _fail_credit or _fail_refund is declined at that
 * operation; _flaky fails each call once with a transient error. Beyond the workshop,
 * _lost_auth, _lost_charge and _lost_credit do the operation but lose every answer to it (a
 * timeout after the fact). An undo by original_key refers to the ledger row of that key, or
 * writes a 'cancelled' row under it. Uses connection c for its ledger (autocommit). */
struct payments *payments_simulator(void);
/* The HTTP client: POST base_url/{preauthorizations|voids|charges|refunds|credits} with a JSON
 * body (fare_id, customer, amount, reference, original_idempotency_key) and an Idempotency-Key
 * header; 2xx with a JSON object is OK (the response's "reference", which a pre-authorization
 * and a charge must have); 408, 409 and 425 (a call with the key still in progress), 429, 5xx,
 * other 2xx, timeouts and connection errors are transient (unsent when no byte of the request
 * was sent); any other status is a decline. A call takes at most timeout_ms (capped at 10 s):
 * callers pass half their lease, so a slow gateway is a transient error that counts against the
 * retry budget, not a lease lost for ever. */
struct payments *payments_http(const char *base_url, long timeout_ms);
void payments_free(struct payments *p);

enum pay_status payments_call(struct payments *p, struct db_conn *c, enum pay_op op,
                              const struct pay_request *rq, struct pay_result *out);
const char *payments_op_name(enum pay_op op);

#endif
