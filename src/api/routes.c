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
    {"GET", "/queues", ROLE_SERVICE, api_queues_list, false},
    {"PUT", "/queues/{name}", ROLE_ADMIN, api_queues_put, true},
    {"GET", "/queues/{name}", ROLE_SERVICE, api_queues_get, false},
    {"DELETE", "/queues/{name}", ROLE_ADMIN, api_queues_delete, false},
    {"POST", "/queues/{name}:purge", ROLE_ADMIN, api_queues_purge, false},
    {"POST", "/queues/{name}:redrive", ROLE_ADMIN, api_queues_redrive, true},
    {"POST", "/queues/{name}/messages", ROLE_SERVICE, api_messages_send, true},
    {"POST", "/queues/{name}/messages:batch", ROLE_SERVICE, api_messages_send_batch, true},
    {"POST", "/queues/{name}/messages:receive", ROLE_SERVICE, api_messages_receive, true},
    {"POST", "/queues/{name}/messages:delete", ROLE_SERVICE, api_messages_delete_batch, true},
    {"GET", "/queues/{name}/messages:peek", ROLE_ADMIN, api_queues_peek, false},
    {"DELETE", "/queues/{name}/messages/{receipt}", ROLE_SERVICE, api_messages_delete, false},
    {"PATCH", "/queues/{name}/messages/{receipt}", ROLE_SERVICE, api_messages_visibility, true},
    {"POST", "/recipient-list", ROLE_SERVICE, api_recipient_list, true},
    {"POST", "/rides", ROLE_APP, api_rides_create, true},
    {"POST", "/submit-ride-completion", ROLE_APP, api_rides_create, true},
    {"GET", "/rides", ROLE_APP, api_rides_list, false},
    {"GET", "/rides/{id}", ROLE_APP, api_rides_get, false},
    {"GET", "/topics", ROLE_SERVICE, api_topics_list, false},
    {"PUT", "/topics/{name}", ROLE_ADMIN, api_topics_put, true},
    {"GET", "/topics/{name}", ROLE_SERVICE, api_topics_get, false},
    {"DELETE", "/topics/{name}", ROLE_ADMIN, api_topics_delete, false},
    {"POST", "/topics/{name}/messages", ROLE_SERVICE, api_topics_publish, true},
    {"POST", "/topics/{name}/messages:batch", ROLE_SERVICE, api_topics_publish_batch, true},
    {"GET", "/topics/{name}/subscriptions", ROLE_SERVICE, api_subscriptions_list, false},
    {"PUT", "/topics/{name}/subscriptions/{sub}", ROLE_ADMIN, api_subscriptions_put, true},
    {"DELETE", "/topics/{name}/subscriptions/{sub}", ROLE_ADMIN, api_subscriptions_delete, false},
};

const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];
