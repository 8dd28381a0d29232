/* Route matching; see include/rydes/router.h for the pattern language.
 *
 * The table is small and static, so matching walks it linearly segment by segment; no
 * allocation happens unless a route matches and has parameters. */
#include "rydes/router.h"

#include "rydes/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *router_percent_decode(const char *src, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            c = (char)(h * 16 + l);
            i += 2;
        }
        out[j++] = c;
    }
    out[j] = '\0';
    return out;
}

/* Next segment of s starting at *pos (which points just past a '/'); sets *len. */
static const char *next_segment(const char *s, size_t *pos, size_t *len)
{
    const char *start = s + *pos;
    const char *slash = strchr(start, '/');
    *len = slash ? (size_t)(slash - start) : strlen(start);
    *pos += *len + (slash ? 1 : 0);
    return start;
}

/* Matches one pattern segment against one path segment, recording a parameter if any. */
static bool match_segment(const char *pat, size_t plen, const char *seg, size_t slen,
                          struct route_match *m, bool record)
{
    if (plen == 0 || pat[0] != '{')
        return plen == slen && memcmp(pat, seg, slen) == 0;
    const char *close = memchr(pat, '}', plen);
    if (!close)
        return false;
    size_t suffix_len = plen - (size_t)(close + 1 - pat);
    if (slen <= suffix_len || memcmp(seg + slen - suffix_len, close + 1, suffix_len) != 0)
        return false;
    size_t vlen = slen - suffix_len;
    if (memchr(seg, ':', vlen))
        return false;
    if (!record)
        return true;
    if (m->nparams == ROUTER_MAX_PARAMS)
        return false;
    char *value = router_percent_decode(seg, vlen);
    if (!value) {
        m->bad_name = pat + 1;
        m->bad_name_len = (size_t)(close - pat - 1);
        return false;
    }
    struct route_param *p = &m->params[m->nparams++];
    p->name = pat + 1;
    p->name_len = (size_t)(close - pat - 1);
    p->value = value;
    return true;
}

/* Does path match pattern? When record, parameters are stored in m. */
static bool match_path(const char *pattern, const char *path, struct route_match *m, bool record)
{
    if (pattern[0] != '/' || path[0] != '/')
        return false;
    size_t ppos = 1, spos = 1;
    for (;;) {
        size_t plen, slen;
        const char *pat = next_segment(pattern, &ppos, &plen);
        const char *seg = next_segment(path, &spos, &slen);
        if (!match_segment(pat, plen, seg, slen, m, record))
            return false;
        bool pat_done = pat[plen] == '\0', path_done = seg[slen] == '\0';
        if (pat_done || path_done)
            return pat_done && path_done;
    }
}

static bool method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

static void allow_add(char *allow, size_t allow_len, const char *method)
{
    if (strstr(allow, method))
        return;
    size_t used = strlen(allow);
    snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "", method);
}

enum router_result router_match(const struct route *table, size_t n, const char *method,
                                const char *path, struct route_match *m, char *allow,
                                size_t allow_len)
{
    memset(m, 0, sizeof *m);
    if (allow_len)
        allow[0] = '\0';
    bool path_known = false;
    for (size_t i = 0; i < n; i++) {
        if (!match_path(table[i].pattern, path, m, false))
            continue;
        path_known = true;
        if (method_matches(table[i].method, method)) {
            m->route = &table[i];
            m->index = (int)i;
            if (match_path(table[i].pattern, path, m, true))
                return ROUTER_FOUND;
            const char *bad = m->bad_name; /* a parameter failed to decode */
            size_t bad_len = m->bad_name_len;
            route_match_cleanup(m);
            m->bad_name = bad;
            m->bad_name_len = bad_len;
            return bad ? ROUTER_BAD_PARAM : ROUTER_NOT_FOUND;
        }
        allow_add(allow, allow_len, table[i].method);
        if (strcmp(table[i].method, "GET") == 0)
            allow_add(allow, allow_len, "HEAD");
    }
    return path_known ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

void route_match_cleanup(struct route_match *m)
{
    for (int i = 0; i < m->nparams; i++)
        free(m->params[i].value);
    memset(m, 0, sizeof *m);
}

const char *route_param(const struct route_match *m, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].name_len == n && memcmp(m->params[i].name, name, n) == 0)
            return m->params[i].value;
    return NULL;
}
