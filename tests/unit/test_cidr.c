/* Unit tests of address ranges and of the client X-Forwarded-For names behind trusted proxies:
 * addresses with and without ports and brackets, ranges and their host bits, lists, and the
 * walk from the last hop back that stops at the first address not trusted. */
#include "rydes/cidr.h"

#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Parses text as an address (the test fails if it is not one). */
static struct cidr_addr addr(const char *text)
{
    struct cidr_addr a;
    ck_assert_msg(cidr_addr_parse(text, strlen(text), &a), "%s", text);
    return a;
}

/* The text form of a. */
static const char *text_of(const struct cidr_addr *a, char *out, size_t n)
{
    return inet_ntop(a->family, a->bytes, out, (socklen_t)n);
}

static struct cidr_list list(const char *text)
{
    struct cidr_list l;
    ck_assert_msg(cidr_list_parse(text, &l), "%s", text);
    return l;
}

START_TEST(addresses_with_ports_and_brackets)
{
    const struct {
        const char *in, *want;
    } ok[] = {
        {"192.0.2.7", "192.0.2.7"},
        {"192.0.2.7:443", "192.0.2.7"},
        {"2001:db8::1", "2001:db8::1"},
        {"[2001:db8::1]", "2001:db8::1"},
        {"[2001:db8::1]:8080", "2001:db8::1"},
        {"::ffff:192.0.2.9", "192.0.2.9"}, /* a mapped IPv4 address is IPv4 */
        {"[::ffff:192.0.2.9]:80", "192.0.2.9"},
        {"fe80::1%eth0", "fe80::1"},
        {"[fe80::1%25eth0]:443", "fe80::1"},
        {"192.0.2.7:65535", "192.0.2.7"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char out[INET6_ADDRSTRLEN];
        struct cidr_addr a = addr(ok[i].in);
        ck_assert_str_eq(text_of(&a, out, sizeof out), ok[i].want);
    }
    const char *bad[] = {"",
                         "192.0.2.7:65536",
                         "192.0.2.7%eth0",
                         "[]",
                         "%eth0",
                         "unknown",
                         "192.0.2",
                         "192.0.2.7:",
                         "192.0.2.7:123456",
                         "192.0.2.7:8x",
                         "[192.0.2.7]",
                         "[2001:db8::1",
                         "[2001:db8::1]x",
                         "2001:db8::1:",
                         "_hidden",
                         " 192.0.2.7",
                         "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cidr_addr a;
        ck_assert_msg(!cidr_addr_parse(bad[i], strlen(bad[i]), &a), "%s", bad[i]);
    }
}
END_TEST

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Asserts that each of the n addresses is (want) or is not within a range of l. */
static void assert_within(const struct cidr_list *l, const char *const *addrs, size_t n, bool want)
{
    for (size_t i = 0; i < n; i++) {
        struct cidr_addr a = addr(addrs[i]);
        ck_assert_msg(cidr_list_contains(l, &a) == want, "%s", addrs[i]);
    }
}

START_TEST(ranges_and_lists)
{
    struct cidr_list l = list(" 10.1.2.3/8 , 192.0.2.7,2001:db8:aa::/48\t");
    ck_assert_int_eq(l.n, 3);
    ck_assert_int_eq(l.items[0].bits, 8); /* host bits cleared: 10.0.0.0/8 */
    ck_assert_int_eq(l.items[0].net.bytes[1], 0);
    ck_assert_int_eq(l.items[1].bits, 32);
    const char *in[] = {"10.255.0.1", "192.0.2.7", "2001:db8:aa:ffff::1"};
    const char *out[] = {"11.0.0.1", "192.0.2.8", "2001:db8:ab::1", "::ffff:11.0.0.1", "::1"};
    assert_within(&l, in, NELEMS(in), true);
    assert_within(&l, out, NELEMS(out), false);
    struct cidr_addr mapped = addr("::ffff:10.9.9.9"); /* matched as IPv4 */
    ck_assert(cidr_list_contains(&l, &mapped));
    /* prefixes that end inside a byte, just inside and just outside */
    struct cidr_list odd = list("172.16.0.0/12, 192.0.2.6/31, 2001:db8::/127, ::ffff:10.0.0.0/104");
    const char *odd_in[] = {"172.31.255.255", "172.16.0.0",  "192.0.2.6", "192.0.2.7",
                            "2001:db8::",     "2001:db8::1", "10.255.1.1"};
    const char *odd_out[] = {"172.32.0.0", "172.15.255.255", "192.0.2.5",
                             "192.0.2.8",  "2001:db8::2",    "11.0.0.0"};
    assert_within(&odd, odd_in, NELEMS(odd_in), true);
    assert_within(&odd, odd_out, NELEMS(odd_out), false);
    ck_assert_int_eq(odd.items[3].net.family, AF_INET); /* the mapped range is 10.0.0.0/8 */
    ck_assert_int_eq(odd.items[3].bits, 8);
    struct cidr_list all = list("0.0.0.0/0");
    struct cidr_addr any = addr("203.0.113.1"), v6 = addr("2001:db8::2");
    ck_assert(cidr_list_contains(&all, &any));
    ck_assert(!cidr_list_contains(&all, &v6));
    ck_assert_int_eq(list("").n, 0);
    ck_assert_int_eq(list("  ").n, 0);
    const char *bad[] = {"10.0.0.0/33",   "2001:db8::/129", "10.0.0.0/",   "10.0.0.0/x",
                         "10.0.0.0/0008", "10.0.0.0,",      ",10.0.0.0",   "10.0.0.0,,10.0.0.1",
                         "10.0.0.1:80",   "[::1]",          "example.com", "::ffff:10.0.0.0/95",
                         "fe80::/64%eth0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cidr_list b;
        ck_assert_msg(!cidr_list_parse(bad[i], &b), "%s", bad[i]);
    }
    char many[64 * 12 + 16] = "";
    for (int i = 0; i < CIDR_LIST_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s10.0.0.%d", i ? "," : "", i);
    ck_assert_int_eq(list(many).n, CIDR_LIST_MAX);
    strcat(many, ",10.0.1.0");
    struct cidr_list b;
    ck_assert(!cidr_list_parse(many, &b));
}
END_TEST

/* The client the walk finds, as text. */
static const char *client(const struct cidr_list *trusted, const char *peer, const char *const *xff,
                          int n, char *out)
{
    struct cidr_addr p = addr(peer);
    struct cidr_addr c = cidr_forwarded_client(trusted, &p, xff, n);
    return text_of(&c, out, INET6_ADDRSTRLEN);
}

START_TEST(the_client_is_the_first_hop_not_trusted)
{
    struct cidr_list t = list("10.0.0.0/8, fd00::/8");
    char out[INET6_ADDRSTRLEN];
    const char *one[] = {"203.0.113.5"};
    ck_assert_str_eq(client(&t, "10.0.0.2", one, 1, out), "203.0.113.5");
    /* a peer that is not trusted is the client, whatever it says */
    ck_assert_str_eq(client(&t, "198.51.100.1", one, 1, out), "198.51.100.1");
    /* no proxies trusted: the peer */
    struct cidr_list none = list("");
    ck_assert_str_eq(client(&none, "10.0.0.2", one, 1, out), "10.0.0.2");
    /* entries a client forged come before the proxy's: they are never reached */
    const char *forged[] = {"1.1.1.1, 2.2.2.2, 203.0.113.5"};
    ck_assert_str_eq(client(&t, "10.0.0.2", forged, 1, out), "203.0.113.5");
    /* two trusted hops, in one header or in two, ports and blanks as proxies write them */
    const char *chain[] = {"1.1.1.1,203.0.113.5:5555 ,\t10.2.3.4"};
    ck_assert_str_eq(client(&t, "10.0.0.2", chain, 1, out), "203.0.113.5");
    const char *split[] = {"1.1.1.1, 203.0.113.5", "[fd00::7]:80"};
    ck_assert_str_eq(client(&t, "10.0.0.2", split, 2, out), "203.0.113.5");
    /* garbage stops the walk at the hop that wrote it */
    const char *garbage[] = {"203.0.113.5, unknown"};
    ck_assert_str_eq(client(&t, "10.0.0.2", garbage, 1, out), "10.0.0.2");
    const char *empty[] = {""};
    ck_assert_str_eq(client(&t, "10.0.0.2", empty, 1, out), "10.0.0.2");
    const char *behind[] = {"203.0.113.5, bogus, 10.9.9.9"};
    ck_assert_str_eq(client(&t, "10.0.0.2", behind, 1, out), "10.9.9.9");
    /* every hop trusted: the first one named */
    const char *inside[] = {"10.7.7.7, 10.8.8.8"};
    ck_assert_str_eq(client(&t, "10.0.0.2", inside, 1, out), "10.7.7.7");
    /* several headers are one list, in the order they came: the walk starts at the last */
    const char *order[] = {"203.0.113.9", "203.0.113.1"};
    ck_assert_str_eq(client(&t, "10.0.0.2", order, 2, out), "203.0.113.1");
    const char *order2[] = {"203.0.113.9", "203.0.113.1, 10.3.3.3", "10.4.4.4"};
    ck_assert_str_eq(client(&t, "10.0.0.2", order2, 3, out), "203.0.113.1");
    /* past CIDR_HOPS_MAX trusted hops the walk stops at the last one it trusted */
    char chain_text[64 * 12] = "203.0.113.1";
    for (int i = 0; i < CIDR_HOPS_MAX + 5; i++)
        snprintf(chain_text + strlen(chain_text), sizeof chain_text - strlen(chain_text),
                 ", 10.0.%d.%d", i / 200, i % 200 + 1);
    const char *long_chain[] = {chain_text};
    client(&t, "10.0.0.2", long_chain, 1, out);
    ck_assert_msg(strncmp(out, "10.0.", 5) == 0, "%s", out);
    /* no header at all: the peer */
    ck_assert_str_eq(client(&t, "10.0.0.2", NULL, 0, out), "10.0.0.2");
    /* IPv6 clients */
    const char *v6[] = {"2001:db8::9"};
    ck_assert_str_eq(client(&t, "fd00::1", v6, 1, out), "2001:db8::9");
}
END_TEST

START_TEST(socket_addresses)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.1", &v4.sin_addr);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6}, mapped = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8::5", &v6.sin6_addr);
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &mapped.sin6_addr);
    struct cidr_addr a;
    char out[INET6_ADDRSTRLEN];
    ck_assert(cidr_addr_of_sockaddr(&v4, &a));
    ck_assert_str_eq(text_of(&a, out, sizeof out), "192.0.2.1");
    ck_assert(cidr_addr_of_sockaddr(&v6, &a));
    ck_assert_str_eq(text_of(&a, out, sizeof out), "2001:db8::5");
    ck_assert(cidr_addr_of_sockaddr(&mapped, &a));
    ck_assert_int_eq(a.family, AF_INET);
    ck_assert_str_eq(text_of(&a, out, sizeof out), "192.0.2.1");
    ck_assert(!cidr_addr_of_sockaddr(NULL, &a));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cidr");
    TCase *tc = tcase_create("cidr");
    tcase_add_test(tc, addresses_with_ports_and_brackets);
    tcase_add_test(tc, ranges_and_lists);
    tcase_add_test(tc, the_client_is_the_first_hop_not_trusted);
    tcase_add_test(tc, socket_addresses);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
