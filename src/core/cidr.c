/* Address ranges and the client named by X-Forwarded-For; see include/rydes/cidr.h. */
#include "rydes/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Longest text of an address this module parses (an IPv6 address with an IPv4 tail). */
#define ADDR_TEXT_MAX 45

/* Parses exactly len bytes as a bare IPv4 or IPv6 address. */
static bool parse_bare(const char *text, size_t len, struct cidr_addr *out)
{
    char s[ADDR_TEXT_MAX + 1];
    if (len == 0 || len > ADDR_TEXT_MAX)
        return false;
    memcpy(s, text, len);
    s[len] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, out->bytes) == 1) {
        out->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, out->bytes) != 1)
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->bytes, mapped, sizeof mapped) == 0) {
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        out->family = AF_INET;
    } else {
        out->family = AF_INET6;
    }
    return true;
}

/* Whether the len bytes at s are ":" and one to five digits. */
static bool is_port(const char *s, size_t len)
{
    if (len < 2 || len > 6 || s[0] != ':')
        return false;
    for (size_t i = 1; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool cidr_addr_parse(const char *text, size_t len, struct cidr_addr *out)
{
    if (len && text[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(text, ']', len);
        if (!close)
            return false;
        size_t rest = len - (size_t)(close + 1 - text);
        if (rest && !is_port(close + 1, rest))
            return false;
        return parse_bare(text + 1, (size_t)(close - text - 1), out) && out->family == AF_INET6;
    }
    const char *colon = memchr(text, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - text))) { /* v4:port */
        size_t host = (size_t)(colon - text);
        return is_port(colon, len - host) && parse_bare(text, host, out) && out->family == AF_INET;
    }
    return parse_bare(text, len, out);
}

bool cidr_addr_of_sockaddr(const void *sockaddr, struct cidr_addr *out)
{
    const struct sockaddr *sa = sockaddr;
    memset(out, 0, sizeof *out);
    if (sa && sa->sa_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->bytes, &((const struct sockaddr_in *)sockaddr)->sin_addr, 4);
        return true;
    }
    if (!sa || sa->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sockaddr)->sin6_addr;
    bool mapped = IN6_IS_ADDR_V4MAPPED(a); /* an IPv4 client of a dual-stack socket */
    out->family = mapped ? AF_INET : AF_INET6;
    memcpy(out->bytes, mapped ? a->s6_addr + 12 : a->s6_addr, mapped ? 4 : 16);
    return true;
}

/* Clears the bits of a past its first bits. */
static void mask(struct cidr_addr *a, int bits)
{
    int total = a->family == AF_INET ? 32 : 128;
    for (int i = bits; i < total; i++)
        a->bytes[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
}

bool cidr_parse(const char *text, size_t len, struct cidr *out)
{
    const char *slash = memchr(text, '/', len);
    size_t alen = slash ? (size_t)(slash - text) : len;
    if (!parse_bare(text, alen, &out->net))
        return false;
    int max = out->net.family == AF_INET ? 32 : 128;
    out->bits = max;
    if (slash) {
        size_t digits = len - alen - 1;
        if (digits == 0 || digits > 3)
            return false;
        int bits = 0;
        for (size_t i = 0; i < digits; i++) {
            char c = slash[1 + i];
            if (c < '0' || c > '9')
                return false;
            bits = bits * 10 + (c - '0');
        }
        if (bits > max)
            return false;
        out->bits = bits;
    }
    mask(&out->net, out->bits);
    return true;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims blanks off both ends of [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len && blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && blank((*s)[*len - 1]))
        (*len)--;
}

bool cidr_list_parse(const char *text, struct cidr_list *out)
{
    out->n = 0;
    const char *p = text;
    size_t all = strlen(text);
    trim(&p, &all);
    if (!all)
        return true;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *e = p;
        trim(&e, &len);
        if (out->n == CIDR_LIST_MAX || !cidr_parse(e, len, &out->items[out->n]))
            return false;
        out->n++;
        if (!comma)
            return true;
        p = comma + 1;
    }
}

static bool within(const struct cidr *c, const struct cidr_addr *a)
{
    if (c->net.family != a->family)
        return false;
    struct cidr_addr m = *a;
    mask(&m, c->bits);
    return memcmp(m.bytes, c->net.bytes, sizeof m.bytes) == 0;
}

bool cidr_list_contains(const struct cidr_list *l, const struct cidr_addr *a)
{
    for (int i = 0; l && i < l->n; i++)
        if (within(&l->items[i], a))
            return true;
    return false;
}

struct cidr_addr cidr_forwarded_client(const struct cidr_list *trusted,
                                       const struct cidr_addr *peer, const char *const *xff, int n)
{
    struct cidr_addr client = *peer;
    for (int h = n - 1; h >= 0; h--) {
        const char *v = xff[h];
        size_t end = strlen(v);
        for (;;) { /* the entries of this header, last first */
            if (!cidr_list_contains(trusted, &client))
                return client;
            size_t start = end;
            while (start && v[start - 1] != ',')
                start--;
            const char *e = v + start;
            size_t len = end - start;
            trim(&e, &len);
            struct cidr_addr a;
            if (!cidr_addr_parse(e, len, &a))
                return client; /* no address: the hop that wrote it is as far as we can see */
            client = a;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
    return client;
}
