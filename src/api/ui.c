/* The operator dashboard: GET /ui (its page) and GET /ui/{file} (its script, style sheet and
 * icon), served from the table tools/embed.py builds from ui/. No token is needed for the files:
 * the page asks the operator for one and calls the public API with it, like any client.
 *
 * Every file goes out with a strict Content-Security-Policy (only this origin's scripts, styles
 * and API; no inline code, no frames, no forms posting elsewhere), so a value that slipped into
 * the page from the data it shows cannot run. Files are revalidated on every load (no-cache)
 * against an ETag that is a hash of their bytes: an upgraded binary is picked up at once, an
 * unchanged file costs a 304. */
#include "rydes/api.h"

#include "rydes/problem.h"
#include "rydes/ui.h"

#include <stdlib.h>
#include <string.h>

#define UI_CSP                                                                        \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "    \
    "frame-ancestors 'none'"

static int by_name(const void *key, const void *elem)
{
    return strcmp(key, ((const struct ui_asset *)elem)->name);
}

/* The embedded file called name, or NULL. */
static const struct ui_asset *ui_find(const char *name)
{
    return bsearch(name, rydes_ui_assets, rydes_ui_assets_count, sizeof *rydes_ui_assets, by_name);
}

/* Does If-None-Match name etag (or "*")? */
static bool not_modified(struct http_request *req, const char *etag)
{
    const char *inm = http_header(req, "If-None-Match");
    return inm && (strstr(inm, etag) || strcmp(inm, "*") == 0);
}

static enum handler_result reply_asset(struct http_request *req, const struct ui_asset *a)
{
    http_add_header(req, "Content-Security-Policy", UI_CSP);
    http_add_header(req, "Cache-Control", "no-cache");
    http_add_header(req, "ETag", a->etag);
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    http_add_header(req, "Referrer-Policy", "no-referrer");
    if (not_modified(req, a->etag))
        return http_reply_empty(req, 304);
    return http_reply_static(req, 200, a->content_type, a->bytes, a->len);
}

enum handler_result api_ui_index(struct http_request *req)
{
    const struct ui_asset *a = ui_find("index.html");
    return a ? reply_asset(req, a) : http_reply_problem(req, 404, "the dashboard is not built in");
}

enum handler_result api_ui_file(struct http_request *req)
{
    const struct ui_asset *a = ui_find(route_param(&req->match, "file"));
    return a ? reply_asset(req, a) : http_reply_problem(req, 404, "no such dashboard file");
}
