/* libFuzzer harness for route matching and percent-decoding (src/http/router.c): the input is
 * "METHOD PATH" (split at the first space); it is matched against the gateway's real route
 * table, every parameter of a match is read back, and the text is read as a query integer. Run with
 * ./dev fuzz router. */
#include "rydes/router.h"
#include "rydes/validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static enum handler_result none(struct http_request *req)
{
    (void)req;
    return HANDLER_DONE;
}

/* A copy of the shapes of src/api/routes.c (the handlers are not linked into the fuzzer). */
static const struct route table[] = {
    {"GET", "/healthz", ROLE_NONE, none, false, ROUTE_HANDLER_THREAD},
    {"POST", "/tokens", ROLE_ADMIN, none, true, ROUTE_HANDLER_THREAD},
    {"GET", "/tokens/{id}", ROLE_ADMIN, none, false, ROUTE_HANDLER_THREAD},
    {"DELETE", "/tokens/{id}", ROLE_ADMIN, none, false, ROUTE_HANDLER_THREAD},
    {"PUT", "/queues/{name}", ROLE_ADMIN, none, true, ROUTE_HANDLER_THREAD},
    {"POST", "/queues/{name}:purge", ROLE_ADMIN, none, false, ROUTE_HANDLER_THREAD},
    {"POST", "/queues/{name}/messages", ROLE_SERVICE, none, true, ROUTE_HANDLER_THREAD},
    {"POST", "/queues/{name}/messages:receive", ROLE_SERVICE, none, true, ROUTE_HANDLER_THREAD},
    {"GET", "/queues/{name}/messages:peek", ROLE_ADMIN, none, false, ROUTE_HANDLER_THREAD},
    {"DELETE", "/queues/{name}/messages/{receipt}", ROLE_SERVICE, none, false,
     ROUTE_HANDLER_THREAD},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *space = strchr(text, ' ');
    const char *method = "GET", *path = text;
    if (space) {
        *space = '\0';
        method = text;
        path = space + 1;
    }
    struct route_match m;
    char allow[128];
    if (router_match(table, sizeof table / sizeof table[0], method, path, &m, allow,
                     sizeof allow) == ROUTER_FOUND) {
        for (int i = 0; i < m.nparams; i++)
            if (strlen(m.params[i].value) > size) /* a decoded value never grows */
                abort();
        route_match_cleanup(&m);
    }
    free(router_percent_decode(text, strlen(text)));
    int64_t v; /* query values: ?limit=, ?max_messages= */
    if (validate_query_int(text, 1, 1000, &v) && (v < 1 || v > 1000))
        abort();
    free(text);
    return 0;
}
