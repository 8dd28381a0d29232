/* The gateway's route table: every route that exists, with the minimum role it needs. The
 * OpenAPI document (openapi/openapi.yaml) describes exactly these. Where each handler runs
 * (enum route_thread): on the HTTP thread when it touches no database or hands its statements
 * on itself (the single send, receive and delete, a publish, POST /rides but a lone ride,
 * /readyz with a free connection or none); on the data plane's threads for the other
 * statements of one request's own size (batches, publish batches); on a handler thread for
 * everything else (lists, peeks, purges, redrives, the Wild Rydes workflows, metrics). The
 * AWS protocols pick per operation (aws_operation_run). */
#include "rydes/api.h"
#include "rydes/aws.h"

const struct route api_routes[] = {
    {"GET", "/healthz", ROLE_NONE, api_healthz, false, ROUTE_HTTP_THREAD},
    {"GET", "/readyz", ROLE_NONE, api_readyz, false, ROUTE_HTTP_THREAD},
    {"GET", "/metrics", ROLE_NONE, api_metrics, false, ROUTE_HANDLER_THREAD},
    {"GET", "/openapi.json", ROLE_NONE, api_openapi, false, ROUTE_HTTP_THREAD},
    /* the dashboard's files are open; the page asks for a token and calls the API with it */
    {"GET", "/ui", ROLE_NONE, api_ui_index, false, ROUTE_HTTP_THREAD},
    {"GET", "/ui/{file}", ROLE_NONE, api_ui_file, false, ROUTE_HTTP_THREAD},
    {"POST", "/tokens", ROLE_ADMIN, api_tokens_create, true, ROUTE_HANDLER_THREAD},
    {"GET", "/tokens", ROLE_ADMIN, api_tokens_list, false, ROUTE_HANDLER_THREAD},
    {"GET", "/tokens/{id}", ROLE_ADMIN, api_tokens_get, false, ROUTE_HANDLER_THREAD},
    {"DELETE", "/tokens/{id}", ROLE_ADMIN, api_tokens_delete, false, ROUTE_HANDLER_THREAD},
    {"GET", "/queues", ROLE_SERVICE, api_queues_list, false, ROUTE_HANDLER_THREAD},
    {"PUT", "/queues/{name}", ROLE_ADMIN, api_queues_put, true, ROUTE_HANDLER_THREAD},
    {"GET", "/queues/{name}", ROLE_SERVICE, api_queues_get, false, ROUTE_HANDLER_THREAD},
    {"DELETE", "/queues/{name}", ROLE_ADMIN, api_queues_delete, false, ROUTE_HANDLER_THREAD},
    {"POST", "/queues/{name}:purge", ROLE_ADMIN, api_queues_purge, false, ROUTE_HANDLER_THREAD},
    {"POST", "/queues/{name}:redrive", ROLE_ADMIN, api_queues_redrive, true, ROUTE_HANDLER_THREAD},
    /* app tokens may send into prebooking-submission only (API.md); the handler checks */
    {"POST", "/queues/{name}/messages", ROLE_APP, api_messages_send, true, ROUTE_HTTP_THREAD},
    {"POST", "/queues/{name}/messages:batch", ROLE_SERVICE, api_messages_send_batch, true,
     ROUTE_DATA_THREAD},
    {"POST", "/queues/{name}/messages:receive", ROLE_SERVICE, api_messages_receive, true,
     ROUTE_HTTP_THREAD},
    {"POST", "/queues/{name}/messages:delete", ROLE_SERVICE, api_messages_delete_batch, true,
     ROUTE_DATA_THREAD},
    {"GET", "/queues/{name}/messages:peek", ROLE_ADMIN, api_queues_peek, false,
     ROUTE_HANDLER_THREAD},
    {"DELETE", "/queues/{name}/messages/{receipt}", ROLE_SERVICE, api_messages_delete, false,
     ROUTE_HTTP_THREAD},
    {"PATCH", "/queues/{name}/messages/{receipt}", ROLE_SERVICE, api_messages_visibility, true,
     ROUTE_DATA_THREAD},
    {"POST", "/recipient-list", ROLE_SERVICE, api_recipient_list, true, ROUTE_DATA_THREAD},
    {"POST", "/rides", ROLE_APP, api_rides_create, true, ROUTE_HTTP_THREAD},
    {"POST", "/submit-ride-completion", ROLE_APP, api_rides_create, true, ROUTE_HTTP_THREAD},
    {"GET", "/rides", ROLE_APP, api_rides_list, false, ROUTE_HANDLER_THREAD},
    {"GET", "/tasks", ROLE_ADMIN, api_tasks_list, false, ROUTE_HANDLER_THREAD},
    {"GET", "/rfqs", ROLE_ADMIN, api_rfqs_list, false, ROUTE_HANDLER_THREAD},
    {"GET", "/fares", ROLE_ADMIN, api_fares_list, false, ROUTE_HANDLER_THREAD},
    {"GET", "/rides/{id}", ROLE_APP, api_rides_get, false, ROUTE_HANDLER_THREAD},
    {"GET", "/rides/{id}/fare", ROLE_APP, api_rides_fare, false, ROUTE_HANDLER_THREAD},
    {"POST", "/fares", ROLE_APP, api_fares_create, true, ROUTE_HANDLER_THREAD},
    {"GET", "/fares/{id}", ROLE_APP, api_fares_get, false, ROUTE_HANDLER_THREAD},
    {"POST", "/prebookings", ROLE_APP, api_prebookings_create, true, ROUTE_HANDLER_THREAD},
    {"POST", "/submit-ride-prebooking", ROLE_APP, api_prebookings_create, true,
     ROUTE_HANDLER_THREAD},
    {"GET", "/prebookings/{id}", ROLE_APP, api_prebookings_get, false, ROUTE_HANDLER_THREAD},
    {"GET", "/tasks/{id}", ROLE_APP, api_tasks_get, false, ROUTE_HANDLER_THREAD},
    {"POST", "/rfqs", ROLE_APP, api_rfqs_create, true, ROUTE_HANDLER_THREAD},
    {"POST", "/submit-instant-ride-rfq", ROLE_APP, api_rfqs_create, true, ROUTE_HANDLER_THREAD},
    {"GET", "/rfqs/{id}/status", ROLE_APP, api_rfqs_status, false, ROUTE_HANDLER_THREAD},
    {"GET", "/rfqs/{id}/result", ROLE_APP, api_rfqs_result, false, ROUTE_HANDLER_THREAD},
    {"GET", "/retrieve-rfq-status", ROLE_APP, api_rfqs_status, false, ROUTE_HANDLER_THREAD},
    {"GET", "/retrieve-rfq-result", ROLE_APP, api_rfqs_result, false, ROUTE_HANDLER_THREAD},
    {"GET", "/query-instant-ride-rfq/{id}", ROLE_APP, api_rfqs_query, false, ROUTE_HANDLER_THREAD},
    {"POST", "/rfqs/{id}/quotes", ROLE_SERVICE, api_rfqs_quote, true, ROUTE_HANDLER_THREAD},
    {"GET", "/topics", ROLE_SERVICE, api_topics_list, false, ROUTE_HANDLER_THREAD},
    {"PUT", "/topics/{name}", ROLE_ADMIN, api_topics_put, true, ROUTE_HANDLER_THREAD},
    {"GET", "/topics/{name}", ROLE_SERVICE, api_topics_get, false, ROUTE_HANDLER_THREAD},
    {"DELETE", "/topics/{name}", ROLE_ADMIN, api_topics_delete, false, ROUTE_HANDLER_THREAD},
    {"POST", "/topics/{name}/messages", ROLE_SERVICE, api_topics_publish, true, ROUTE_HTTP_THREAD},
    {"POST", "/topics/{name}/messages:batch", ROLE_SERVICE, api_topics_publish_batch, true,
     ROUTE_DATA_THREAD},
    {"GET", "/topics/{name}/subscriptions", ROLE_SERVICE, api_subscriptions_list, false,
     ROUTE_HANDLER_THREAD},
    {"GET", "/topics/{name}/subscriptions/{sub}", ROLE_SERVICE, api_subscriptions_get, false,
     ROUTE_HANDLER_THREAD},
    {"PUT", "/topics/{name}/subscriptions/{sub}", ROLE_ADMIN, api_subscriptions_put, true,
     ROUTE_HANDLER_THREAD},
    {"DELETE", "/topics/{name}/subscriptions/{sub}", ROLE_ADMIN, api_subscriptions_delete, false,
     ROUTE_HANDLER_THREAD},
    /* the AWS protocols (SQS, SNS): signed with SigV4, authorized by the operation (aws.h) */
    {"POST", "/", ROLE_NONE, aws_dispatch, ROUTE_RAW_BODY, ROUTE_HTTP_THREAD},
    {"POST", "/" AWS_ACCOUNT_ID "/{queue}", ROLE_NONE, aws_dispatch, ROUTE_RAW_BODY,
     ROUTE_HTTP_THREAD},
};

const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];
