/* Token management (admin): create, list, read, delete. The secret is returned once, by the
 * create call; every other representation shows only id, name, role and creation time. */
#include "rydes/api.h"

#include "rydes/app.h"

#include "rydes/mem.h"
#include "rydes/problem.h"

#include <stdio.h>
#include <stdlib.h>

static json_t *token_json(const struct token_info *t)
{
    char self[64];
    snprintf(self, sizeof self, "/tokens/%s", t->id);
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "id", t->id, "name", t->name, "role",
                     role_name(t->role), "created_at", t->created_at, "links", "self", self);
}

enum handler_result api_tokens_create(struct http_request *req)
{
    static const char *const known[] = {"role", "name", NULL};
    enum handler_result res;
    if (!api_body_object(req, &res))
        return res;
    struct field_errors fe;
    field_errors_init(&fe);
    validate_known_fields(req->json, known, &fe);
    const char *role_text = validate_string(req->json, "role", true, 1, 16, &fe);
    enum role role = ROLE_NONE;
    if (role_text && !role_parse(role_text, &role))
        field_errors_add(&fe, "role", "must be one of app, service, admin");
    const char *name = validate_string(req->json, "name", false, 1, 100, &fe);
    if (name && !validate_one_line(name)) /* shown in lists and logs: one line of text */
        field_errors_add(&fe, "name", "must not contain line breaks or control characters");
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    char secret[SECRET_TOKEN_LEN];
    struct token_info t;
    enum store_result r = tokens_create(c, role, name ? name : "", secret, &t);
    api_db_release(req, c);
    if (r != STORE_OK)
        return api_store_failed(req, r);
    json_t *body = token_json(&t);
    json_object_set_new(body, "token", json_string(secret));
    char location[64];
    snprintf(location, sizeof location, "/tokens/%s", t.id);
    http_add_header(req, "Location", location);
    return http_reply_json(req, 201, body);
}

static bool parse_cursor(const char *after, long long *out)
{
    int64_t v = 0;
    if (after && !validate_query_int(after, 0, INT64_MAX, &v))
        return false;
    *out = v;
    return true;
}

enum handler_result api_tokens_list(struct http_request *req)
{
    struct field_errors fe;
    field_errors_init(&fe);
    int limit;
    const char *after;
    long long cursor = 0;
    api_page(req, &limit, &after, &fe);
    if (!parse_cursor(after, &cursor))
        field_errors_add(&fe, "after", "is not a cursor returned by this list");
    enum handler_result res;
    if (api_reply_invalid(req, &fe, &res))
        return res;
    struct db_conn *c = api_db_acquire(req, &res);
    if (!c)
        return res;
    struct token_info *items = NULL;
    int count = 0;
    bool more = false;
    enum store_result r = tokens_list(c, cursor, limit, &items, &count, &more);
    api_db_release(req, c);
    if (r != STORE_OK)
        return api_store_failed(req, r);
    json_t *list = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(list, token_json(&items[i]));
    char next[24];
    if (more)
        snprintf(next, sizeof next, "%lld", items[count - 1].seq);
    free(items);
    return http_reply_json(
        req, 200,
        json_pack("{s:o, s:o}", "tokens", list, "next", more ? json_string(next) : json_null()));
}

typedef enum store_result (*token_op)(struct db_conn *c, const char *id, struct token_info *t);

static enum store_result delete_op(struct db_conn *c, const char *id, struct token_info *t)
{
    (void)t;
    return tokens_delete(c, id);
}

/* Runs op on the token named by {id}. Returns true on success; otherwise the 404, 503 or 500
 * is already queued and *res holds its result. An id that cannot be a token's is not found. */
static bool on_token(struct http_request *req, token_op op, struct token_info *t,
                     enum handler_result *res)
{
    const char *id = route_param(&req->match, "id");
    struct db_conn *c = NULL;
    enum store_result r = STORE_NOT_FOUND;
    if (id && ids_is_uuid(id)) {
        if (!(c = api_db_acquire(req, res)))
            return false;
        r = op(c, id, t);
        api_db_release(req, c);
    }
    if (r == STORE_OK)
        return true;
    *res = r == STORE_NOT_FOUND ? http_reply_problem(req, 404, "no token with this id")
                                : api_store_failed(req, r);
    return false;
}

enum handler_result api_tokens_get(struct http_request *req)
{
    struct token_info t;
    enum handler_result res;
    if (!on_token(req, tokens_get, &t, &res))
        return res;
    return http_reply_json(req, 200, token_json(&t));
}

enum handler_result api_tokens_delete(struct http_request *req)
{
    struct token_info unused;
    enum handler_result res;
    if (!on_token(req, delete_op, &unused, &res))
        return res;
    /* revoked here at once (a lookup that read the token before cannot cache it after this,
     * rydes/ttlcache.h), its access keys too; elsewhere within the TTL */
    ttlcache_clear(req->app->token_cache);
    ttlcache_clear(req->app->aws_key_cache);
    return http_reply_empty(req, 204);
}
