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

/* Whether the len bytes at s are ":" and a port number (1 to 5 digits, at most 65535). */
static bool is_port(const char *s, size_t len)
{
    if (len < 2 || len > 6 || s[0] != ':')
        return false;
    long port = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (s[i] - '0');
    }
    return port <= 65535;
}

/* An IPv6 address of len bytes, without a zone ("%eth0": only the /64 counts for a key). */
static bool parse_v6(const char *text, size_t len, struct cidr_addr *out)
{
    const char *zone = memchr(text, '%', len);
    size_t n = zone ? (size_t)(zone - text) : len;
    return memchr(text, ':', n) && parse_bare(text, n, out); /* maybe mapped: then IPv4 */
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
        return parse_v6(text + 1, (size_t)(close - text - 1), out);
    }
    const char *colon = memchr(text, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - text))) { /* v4:port */
        size_t host = (size_t)(colon - text);
        return is_port(colon, len - host) && parse_bare(text, host, out) && out->family == AF_INET;
    }
    return colon ? parse_v6(text, len, out) : parse_bare(text, len, out);
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
    int full = bits / 8, rest = bits % 8;
    if (rest)
        a->bytes[full++] &= (unsigned char)(0xffu << (8 - rest));
    memset(a->bytes + full, 0, sizeof a->bytes - (size_t)full);
}

bool cidr_parse(const char *text, size_t len, struct cidr *out)
{
    const char *slash = memchr(text, '/', len);
    size_t alen = slash ? (size_t)(slash - text) : len;
    if (!parse_bare(text, alen, &out->net))
        return false;
    /* an IPv4-mapped range (::ffff:a.b.c.d/BITS, BITS >= 96) is the IPv4 range it maps */
    bool mapped = out->net.family == AF_INET && memchr(text, ':', alen);
    int max = out->net.family == AF_INET && !mapped ? 32 : 128;
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
        if (bits > max || (mapped && bits < 96))
            return false;
        out->bits = bits;
    }
    if (mapped)
        out->bits -= 96;
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
        if (out->n == CIDR_LIST_MAX || !cidr_parse(e, len, &out->items[out->n])) {
            out->n = 0;
            return false;
        }
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
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->net.bytes, a->bytes, (size_t)full) != 0)
        return false;
    return !rest || (a->bytes[full] & (unsigned char)(0xffu << (8 - rest))) == c->net.bytes[full];
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
    int hops = 0;
    for (int h = n - 1; h >= 0; h--) {
        const char *v = xff[h];
        size_t end = strlen(v);
        for (;;) { /* the entries of this header, last first */
            if (!cidr_list_contains(trusted, &client) || hops++ == CIDR_HOPS_MAX)
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
