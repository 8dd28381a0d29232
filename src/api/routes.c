/* The gateway's route table: every route that exists, with the minimum role it needs. The
 * OpenAPI document (openapi/openapi.yaml) describes exactly these. */
#include "rydes/api.h"

const struct route api_routes[] = {
    {"GET", "/healthz", ROLE_NONE, api_healthz, false},
    {"GET", "/readyz", ROLE_NONE, api_readyz, false},
    {"GET", "/metrics", ROLE_NONE, api_metrics, false},
    {"GET", "/openapi.json", ROLE_NONE, api_openapi, false},
    {"POST", "/tokens", ROLE_ADMIN, api_tokens_create, true},
    {"GET", "/tokens", ROLE_ADMIN, api_tokens_list, false},
    {"GET", "/tokens/{id}", ROLE_ADMIN, api_tokens_get, false},
    {"DELETE", "/tokens/{id}", ROLE_ADMIN, api_tokens_delete, false},
};

const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];
