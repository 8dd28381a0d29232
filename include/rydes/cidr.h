/* Address ranges in CIDR notation (IPv4 and IPv6) and lists of them: the trusted proxies whose
 * X-Forwarded-For names the client (RYDES_TRUSTED_PROXIES). Plain values, no allocation. */
#ifndef RYDES_CIDR_H
#define RYDES_CIDR_H

#include <stdbool.h>
#include <stddef.h>

/* Ranges a list may hold. */
#define CIDR_LIST_MAX 64
/* Trusted hops a walk passes over at most (the one after is the client, trusted or not). */
#define CIDR_HOPS_MAX 32

/* An address: AF_INET (4 bytes used) or AF_INET6 (16). IPv4-mapped IPv6 addresses are kept as
 * IPv4. */
struct cidr_addr {
    int family;
    unsigned char bytes[16];
};

struct cidr {
    struct cidr_addr net; /* host bits cleared */
    int bits;             /* prefix length: 0..32 or 0..128 */
};

struct cidr_list {
    int n;
    struct cidr items[CIDR_LIST_MAX];
};

/* Parses the len bytes of text as an address: IPv4, IPv6, or IPv6 in brackets, the last two
 * maybe with a zone ("%eth0", dropped), IPv4 and bracketed IPv6 maybe with a ":port" (proxies
 * write either). */
bool cidr_addr_parse(const char *text, size_t len, struct cidr_addr *out);
/* The address of a socket (AF_INET or AF_INET6); false for any other family or NULL. */
bool cidr_addr_of_sockaddr(const void *sockaddr, struct cidr_addr *out);
/* Parses "ADDRESS" or "ADDRESS/BITS" (no port, no brackets, no zone); host bits past the prefix
 * are cleared. An IPv4-mapped range (::ffff:a.b.c.d/96 and longer) is the IPv4 range. */
bool cidr_parse(const char *text, size_t len, struct cidr *out);
/* Parses a comma-separated list of ranges (blanks around entries allowed; empty text: an
 * empty list). False, with *out empty, for a malformed entry or more than CIDR_LIST_MAX. */
bool cidr_list_parse(const char *text, struct cidr_list *out);
/* Whether a lies within a range of l. */
bool cidr_list_contains(const struct cidr_list *l, const struct cidr_addr *a);

/* The client of a request that came from peer with the X-Forwarded-For header values xff[0..n)
 * (in the order they arrived): walking the entries from the last one back, each hop that is a
 * trusted proxy hands over to the address it names, and the first hop that is not trusted is
 * the client. An entry that is no address stops the walk at the hop that wrote it, and so does
 * a walk past CIDR_HOPS_MAX trusted hops. Without
 * trusted proxies, or from a peer that is not one, the peer is the client. */
struct cidr_addr cidr_forwarded_client(const struct cidr_list *trusted,
                                       const struct cidr_addr *peer, const char *const *xff, int n);

#endif
