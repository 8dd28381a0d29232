/* Unit tests for SNS subscription filter policies (src/mq/filter.c): one table of match and
 * non-match rows per operator (exact strings, numbers and literals, anything-but, prefix,
 * suffix, equals-ignore-case, wildcard, numeric, exists, cidr, $or, nested body keys,
 * String.Array scanning), every example of Amazon's filter-policy pages in both attribute and
 * payload form, a table of invalid policies with the expected fragment of the error, the
 * 5-key and 150-combination limits at and over, and the API's edges (NULL arguments, error
 * buffer truncation, a policy outliving its JSON).
 *
 * JSON in the tables uses single quotes: every ' becomes ", so \' is an escaped quote. */
#include "rydes/filter.h"

#include "unit.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define A FILTER_SCOPE_ATTRIBUTES
#define B FILTER_SCOPE_BODY

/* Message attributes: a String, a Number, a String.Array, a Binary, any type. */
#define S(n, v)    "'" n "': {'type': 'String', 'value': '" v "'}"
#define N(n, v)    "'" n "': {'type': 'Number', 'value': '" v "'}"
#define SA(n, v)   "'" n "': {'type': 'String.Array', 'value': '" v "'}"
#define BIN(n)     "'" n "': {'type': 'Binary', 'value': 'AAEC'}"
#define T(n, t, v) "'" n "': {'type': '" t "', 'value': '" v "'}"

struct row {
    enum filter_scope scope;
    const char *policy;
    const char *message; /* attributes (scope A) or body (scope B) */
    bool match;
};

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

/* Parses single-quoted JSON (any value); NULL when it does not parse. */
static json_t *sq_json(const char *text)
{
    size_t n = strlen(text);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i <= n; i++)
        s[i] = text[i] == '\'' ? '"' : text[i];
    json_error_t e;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
    free(s);
    return v;
}

static struct filter_policy *compile_sq(const char *policy, enum filter_scope scope, char *err,
                                        size_t errlen)
{
    json_t *p = sq_json(policy);
    ck_assert_msg(p != NULL, "policy does not parse: %s", policy);
    struct filter_policy *f = filter_compile_new(p, scope, err, errlen);
    json_decref(p);
    return f;
}

static bool match(const struct filter_policy *f, enum filter_scope scope, json_t *msg)
{
    return scope == B ? filter_match_body(f, msg) : filter_match_attributes(f, msg);
}

static void check_rows(const char *table, const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        char err[256];
        struct filter_policy *f = compile_sq(r->policy, r->scope, err, sizeof err);
        ck_assert_msg(f != NULL, "%s[%zu]: %s refused: %s", table, i, r->policy, err);
        json_t *msg = sq_json(r->message);
        ck_assert_msg(msg != NULL, "%s[%zu]: message does not parse: %s", table, i, r->message);
        ck_assert_msg(match(f, r->scope, msg) == r->match, "%s[%zu]: %s %s %s", table, i, r->policy,
                      r->match ? "should match" : "should not match", r->message);
        json_decref(msg);
        filter_free(f);
    }
}

#define CHECK_ROWS(t) check_rows(#t, t, NROWS(t))

/* ---- Amazon's documented examples ---- */

/* "Example filter policies": the transaction message, as attributes and as a body. */
#define TX_ATTRS                                                                      \
    "{" SA("customer_interests", "[\\'soccer\\', \\'rugby\\', \\'hockey\\']") ", " S( \
        "store", "example_corp") ", " S("event", "order_placed") ", " N("price_usd", "210.75") "}"
#define TX_BODY                                                                       \
    "{'customer_interests': ['soccer', 'rugby', 'hockey'], 'store': 'example_corp', " \
    "'event': 'order_placed', 'price_usd': 210.75}"
#define TX_ACCEPT                                                                  \
    "{'store': ['example_corp'], 'event': [{'anything-but': 'order_cancelled'}], " \
    "'customer_interests': ['rugby', 'football', 'baseball'], "                    \
    "'price_usd': [{'numeric': ['>=', 100]}]}"
#define TX_REJECT                                                                      \
    "{'store': ['example_corp'], 'event': ['order_cancelled'], 'encrypted': [false], " \
    "'customer_interests': ['basketball', 'baseball']}"

static const struct row doc_example_rows[] = {
    {A, TX_ACCEPT, TX_ATTRS, true},
    {A, TX_REJECT, TX_ATTRS, false},
    {B, TX_ACCEPT, TX_BODY, true},
    {B, TX_REJECT, TX_BODY, false},
    /* and-or-logic: AND across keys */
    {A, "{'customer_interests': ['rugby'], 'price_usd': [{'numeric': ['>', 100]}]}",
     "{" S("customer_interests", "rugby") ", " N("price_usd", "100.5") "}", true},
    {A, "{'customer_interests': ['rugby'], 'price_usd': [{'numeric': ['>', 100]}]}",
     "{" S("customer_interests", "rugby") ", " N("price_usd", "100") "}", false},
    {B, "{'customer_interests': ['rugby'], 'price_usd': [{'numeric': ['>', 100]}]}",
     "{'customer_interests': 'rugby', 'price_usd': 101}", true},
    {B, "{'customer_interests': ['rugby'], 'price_usd': [{'numeric': ['>', 100]}]}",
     "{'customer_interests': 'football', 'price_usd': 101}", false},
    /* and-or-logic: OR across the values of one key */
    {A, "{'customer_interests': ['rugby', 'football', 'baseball']}",
     "{" S("customer_interests", "football") "}", true},
    {B, "{'customer_interests': ['rugby', 'football', 'baseball']}",
     "{'customer_interests': 'baseball'}", true},
    {B, "{'customer_interests': ['rugby', 'football', 'baseball']}",
     "{'customer_interests': 'tennis'}", false},
};

/* ---- Exact values: strings, numbers, true, false, null ---- */

#define CI_RUGBY_TENNIS "{'customer_interests': ['rugby', 'tennis']}"

static const struct row exact_rows[] = {
    /* string-value-matching, exact matching */
    {A, CI_RUGBY_TENNIS, "{" S("customer_interests", "rugby") "}", true},
    {A, CI_RUGBY_TENNIS, "{" S("customer_interests", "tennis") "}", true},
    {A, CI_RUGBY_TENNIS, "{" SA("customer_interests", "[\\'rugby\\', \\'tennis\\']") "}", true},
    {A, CI_RUGBY_TENNIS, "{" S("customer_interests", "baseball") "}", false},
    {A, CI_RUGBY_TENNIS, "{" SA("customer_interests", "[\\'baseball\\']") "}", false},
    {B, CI_RUGBY_TENNIS, "{'customer_interests': 'rugby'}", true},
    {B, CI_RUGBY_TENNIS, "{'customer_interests': 'tennis'}", true},
    {B, CI_RUGBY_TENNIS, "{'customer_interests': 'baseball'}", false},
    /* case-sensitive; other keys ignored; missing key; types */
    {A, CI_RUGBY_TENNIS, "{" S("customer_interests", "Rugby") "}", false},
    {A, CI_RUGBY_TENNIS, "{" S("other", "rugby") "}", false},
    {A, CI_RUGBY_TENNIS, "{" S("customer_interests", "rugby") ", " S("x", "y") "}", true},
    {A, CI_RUGBY_TENNIS, "{" T("customer_interests", "String.custom", "rugby") "}", true},
    {A, CI_RUGBY_TENNIS, "{" T("customer_interests", "Binary", "rugby") "}", false},
    {A, CI_RUGBY_TENNIS, "{}", false},
    {A, CI_RUGBY_TENNIS, "null", false},
    {B, CI_RUGBY_TENNIS, "{'customer_interests': ['baseball', 'rugby']}", true},
    {B, CI_RUGBY_TENNIS, "{'customer_interests': 5}", false},
    {B, CI_RUGBY_TENNIS, "{'customer_interests': {'rugby': 1}}", false},
    {B, "{'a': ['']}", "{'a': ''}", true},
    /* numbers compare numerically: 300 matches 3.0e2, to five decimals */
    {A, "{'n': [300]}", "{" N("n", "3.0e2") "}", true},
    {A, "{'n': [300]}", "{" N("n", "300") "}", true},
    {A, "{'n': [300]}", "{" T("n", "Number.int", "300.000001") "}", true},
    {A, "{'n': [300]}", "{" N("n", "300.00001") "}", false},
    {A, "{'n': [300]}", "{" S("n", "300") "}", false},
    {A, "{'n': ['300']}", "{" N("n", "300") "}", false},
    {A, "{'n': [300]}", "{" SA("n", "[1, 3e2]") "}", true},
    {A, "{'n': [{'numeric': ['>=', 1.000001, '<=', 1.000004]}]}", "{" N("n", "1.000002") "}", true},
    /* an array is JSON text: numbers JSON does not allow make it malformed, which matches
     * nothing, not even exists: false */
    {A, "{'n': [{'numeric': ['>', 4]}]}", "{" SA("n", "[+5]") "}", false},
    {A, "{'n': [{'numeric': ['>', 4]}]}", "{" SA("n", "[05]") "}", false},
    {A, "{'n': [{'numeric': ['>', 4]}]}", "{" SA("n", "[.5e1]") "}", false},
    {A, "{'n': [{'numeric': ['>', 4]}]}", "{" SA("n", "[5.]") "}", false},
    {A, "{'n': [{'numeric': ['>', 4]}]}", "{" SA("n", "[5.0e+0, -0, 0.5]") "}", true},
    {A, "{'n': [{'exists': false}]}", "{" SA("n", "[05]") ", " S("x", "y") "}", false},
    {B, "{'n': [300]}", "{'n': 3.0e2}", true},
    {B, "{'n': [3.0e2]}", "{'n': 300}", true},
    {B, "{'n': [-0.5]}", "{'n': -5e-1}", true},
    {B, "{'n': [300]}", "{'n': '300'}", false},
    {B, "{'n': [300]}", "{'n': 301}", false},
    /* true, false, null */
    {B, "{'flag': [true]}", "{'flag': true}", true},
    {B, "{'flag': [true]}", "{'flag': 'true'}", false},
    {B, "{'flag': [false]}", "{'flag': false}", true},
    {B, "{'flag': [false]}", "{'flag': true}", false},
    {B, "{'v': [null]}", "{'v': null}", true},
    {B, "{'v': [null]}", "{}", false},
    {B, "{'v': [null]}", "{'v': 'null'}", false},
    {A, "{'flag': [true]}", "{" SA("flag", "[true]") "}", true},
    {A, "{'flag': [true]}", "{" S("flag", "true") "}", false},
    {A, "{'v': [null]}", "{" SA("v", "[null]") "}", true},
    /* SNS (recorded): [null, anything-but] does not match a message without attributes */
    {A, "{'attr1': [null, {'anything-but': 'whatever'}]}", "{}", false},
    {A, "{'attr1': [null, {'anything-but': 'whatever'}]}", "{" S("attr1", "x") "}", true},
};

/* ---- anything-but ---- */

#define BUT_RT    "{'customer_interests': [{'anything-but': ['rugby', 'tennis']}]}"
#define BUT_PRICE "{'price': [{'anything-but': [100, 500]}]}"
#define BUT_ORDER "{'event': [{'anything-but': {'prefix': 'order-'}}]}"

static const struct row anything_but_rows[] = {
    /* string-value-matching, anything-but matching */
    {A, BUT_RT, "{" S("customer_interests", "baseball") "}", true},
    {A, BUT_RT, "{" S("customer_interests", "football") "}", true},
    {A, BUT_RT, "{" S("customer_interests", "rugby") "}", false},
    /* String.Array: matches only when none of the elements is listed */
    {A, BUT_RT, "{" SA("customer_interests", "[\\'rugby\\', \\'baseball\\']") "}", false},
    {A, BUT_RT, "{" SA("customer_interests", "[\\'baseball\\', \\'football\\']") "}", true},
    {A, BUT_RT, "{" SA("customer_interests", "[]") "}", false},
    {A, BUT_RT, "{}", false},
    {B, BUT_RT, "{'customer_interests': 'baseball'}", true},
    {B, BUT_RT, "{'customer_interests': 'football'}", true},
    {B, BUT_RT, "{'customer_interests': ['rugby', 'baseball']}", true},
    {B, BUT_RT, "{'customer_interests': 'rugby'}", false},
    {B, BUT_RT, "{'customer_interests': ['rugby', 'tennis']}", false},
    {B, BUT_RT, "{'customer_interests': null}", false},
    {B, BUT_RT, "{'customer_interests': 5}", true},
    {B, BUT_RT, "{'other': 'x'}", false},
    /* example filter policies: a single string */
    {A, "{'event': [{'anything-but': 'order_cancelled'}]}", "{" S("event", "order_placed") "}",
     true},
    {A, "{'event': [{'anything-but': 'order_cancelled'}]}", "{" S("event", "order_cancelled") "}",
     false},
    /* numeric-value-matching, anything-but matching */
    {A, BUT_PRICE, "{" N("price", "101") "}", true},
    {A, BUT_PRICE, "{" N("price", "100.1") "}", true},
    {A, BUT_PRICE, "{" T("price", "Number.Array", "[100, 50]") "}", true},
    {A, BUT_PRICE, "{" N("price", "100") "}", false},
    {A, BUT_PRICE, "{" N("price", "1e2") "}", false},
    {B, BUT_PRICE, "{'price': 101}", true},
    {B, BUT_PRICE, "{'price': 100.1}", true},
    {B, BUT_PRICE, "{'price': [100, 50]}", true},
    {B, BUT_PRICE, "{'price': 100}", false},
    {B, BUT_PRICE, "{'price': 500.0}", false},
    {B, "{'price': [{'anything-but': 100}]}", "{'price': 99}", true},
    {B, "{'price': [{'anything-but': 100}]}", "{'price': 100}", false},
    /* using a prefix with the anything-but operator */
    {A, BUT_ORDER, "{" S("event", "data-entry") "}", true},
    {A, BUT_ORDER, "{" S("event", "order_number") "}", true},
    {A, BUT_ORDER, "{" S("event", "order-cancelled") "}", false},
    {B, BUT_ORDER, "{'event': 'data-entry'}", true},
    {B, BUT_ORDER, "{'event': 'order-cancelled'}", false},
    /* suffix */
    {B, "{'f': [{'anything-but': {'suffix': '.png'}}]}", "{'f': 'a.jpg'}", true},
    {B, "{'f': [{'anything-but': {'suffix': '.png'}}]}", "{'f': 'a.png'}", false},
    {A, "{'f': [{'anything-but': {'suffix': '.png'}}]}", "{" SA("f", "[\\'a.png\\']") "}", false},
    /* anything-but combined with exists false */
    {B, "{'ci': [{'anything-but': ['rugby']}, {'exists': false}]}", "{}", true},
    {B, "{'ci': [{'anything-but': ['rugby']}, {'exists': false}]}", "{'ci': 'golf'}", true},
    {B, "{'ci': [{'anything-but': ['rugby']}, {'exists': false}]}", "{'ci': 'rugby'}", false},
    {A, "{'ci': [{'anything-but': ['rugby']}, {'exists': false}]}", "{" S("x", "y") "}", true},
    {A, "{'ci': [{'anything-but': ['rugby']}, {'exists': false}]}", "{}", false},
};

/* ---- prefix, suffix, equals-ignore-case, wildcard ---- */

static const struct row prefix_rows[] = {
    {A, "{'customer_interests': [{'prefix': 'bas'}]}", "{" S("customer_interests", "baseball") "}",
     true},
    {A, "{'customer_interests': [{'prefix': 'bas'}]}",
     "{" S("customer_interests", "basketball") "}", true},
    {A, "{'customer_interests': [{'prefix': 'bas'}]}", "{" S("customer_interests", "rugby") "}",
     false},
    {A, "{'customer_interests': [{'prefix': 'bas'}]}",
     "{" SA("customer_interests", "[\\'rugby\\', \\'basketball\\']") "}", true},
    {A, "{'customer_interests': [{'prefix': 'bas'}]}", "{" S("customer_interests", "ba") "}",
     false},
    {B, "{'customer_interests': [{'prefix': 'bas'}]}", "{'customer_interests': 'baseball'}", true},
    {B, "{'customer_interests': [{'prefix': 'bas'}]}", "{'customer_interests': 'rugby'}", false},
    {B, "{'n': [{'prefix': '1'}]}", "{'n': 123}", false},
    {B, "{'s': [{'prefix': ''}]}", "{'s': 'anything'}", true},
    /* an escaped element: \u0062 is b */
    {A, "{'c': [{'prefix': 'bas'}]}", "{" SA("c", "[\\'\\\\u0062ase\\']") "}", true},
};

static const struct row suffix_rows[] = {
    {A, "{'customer_interests': [{'suffix': 'ball'}]}", "{" S("customer_interests", "baseball") "}",
     true},
    {A, "{'customer_interests': [{'suffix': 'ball'}]}",
     "{" S("customer_interests", "basketball") "}", true},
    {A, "{'customer_interests': [{'suffix': 'ball'}]}", "{" S("customer_interests", "rugby") "}",
     false},
    {A, "{'customer_interests': [{'suffix': 'ball'}]}", "{" S("customer_interests", "all") "}",
     false},
    {A, "{'c': [{'suffix': 'ball'}]}", "{" SA("c", "[\\'rugby\\', \\'foot\\\\u0062all\\']") "}",
     true},
    {B, "{'customer_interests': [{'suffix': 'ball'}]}", "{'customer_interests': 'football'}", true},
    {B, "{'customer_interests': [{'suffix': 'ball'}]}", "{'customer_interests': 'balls'}", false},
    {B, "{'f': [{'suffix': '.png'}]}", "{'f': ['a.jpg', 'b.png']}", true},
};

static const struct row nocase_rows[] = {
    {A, "{'ci': [{'equals-ignore-case': 'tennis'}]}", "{" S("ci", "TENNIS") "}", true},
    {A, "{'ci': [{'equals-ignore-case': 'tennis'}]}", "{" S("ci", "Tennis") "}", true},
    {A, "{'ci': [{'equals-ignore-case': 'tennis'}]}", "{" S("ci", "tennis") "}", true},
    {A, "{'ci': [{'equals-ignore-case': 'tennis'}]}", "{" S("ci", "tennis ") "}", false},
    {A, "{'ci': [{'equals-ignore-case': 'tennis'}]}", "{" S("ci", "tenni") "}", false},
    {A, "{'ci': [{'equals-ignore-case': 'tennis'}]}",
     "{" SA("ci", "[\\'RUGBY\\', \\'TeNNiS\\']") "}", true},
    {B, "{'ci': [{'equals-ignore-case': 'TENNIS'}]}", "{'ci': 'tEnNiS'}", true},
    {B, "{'ci': [{'equals-ignore-case': 'tennis'}]}", "{'ci': 'rugby'}", false},
    {B, "{'w': [{'equals-ignore-case': '\xc3\xa9\x63ole'}]}", "{'w': '\xc3\x89\x43OLE'}", true},
    {B, "{'w': [{'equals-ignore-case': '\xce\xb1\xce\xb2\xce\xb3'}]}",
     "{'w': '\xce\x91\xce\x92\xce\x93'}", true},
    {B, "{'w': [{'equals-ignore-case': '\xd0\xbc\xd0\xb8\xd1\x80'}]}",
     "{'w': '\xd0\x9c\xd0\x98\xd0\xa0'}", true},
    {A, "{'w': [{'equals-ignore-case': '\xc3\xa9'}]}", "{" SA("w", "[\\'\\\\u00c9\\']") "}", true},
    /* Latin Extended-A pairs: upper case on odd (\xc5\x81) and on even (\xc4\x84) code points */
    {B, "{'w': [{'equals-ignore-case': '\xc5\x82\xc3\xb3\x64\xc5\xba'}]}",
     "{'w': '\xc5\x81\xc3\x93\x44\xc5\xb9'}", true},
    {B, "{'w': [{'equals-ignore-case': '\xc4\x85'}]}", "{'w': '\xc4\x84'}", true},
    {B, "{'w': [{'equals-ignore-case': '\xc4\x85'}]}", "{'w': '\xc4\x86'}", false},
};

static const struct row wildcard_rows[] = {
    {B, "{'f': [{'wildcard': 'dir/*.png'}]}", "{'f': 'dir/a.png'}", true},
    {B, "{'f': [{'wildcard': 'dir/*.png'}]}", "{'f': 'dir/.png'}", true},
    {B, "{'f': [{'wildcard': 'dir/*.png'}]}", "{'f': 'dir/a.jpg'}", false},
    {B, "{'f': [{'wildcard': 'dir/*.png'}]}", "{'f': 'xdir/a.png'}", false},
    {B, "{'f': [{'wildcard': '*'}]}", "{'f': ''}", true},
    {B, "{'f': [{'wildcard': '*'}]}", "{'f': 5}", false},
    {B, "{'f': [{'wildcard': 'a*b*c'}]}", "{'f': 'abc'}", true},
    {B, "{'f': [{'wildcard': 'a*b*c'}]}", "{'f': 'aXbYc'}", true},
    {B, "{'f': [{'wildcard': 'a*b*c'}]}", "{'f': 'acb'}", false},
    {B, "{'f': [{'wildcard': 'a*b*c'}]}", "{'f': 'ab'}", false},
    {B, "{'f': [{'wildcard': 'a*ba'}]}", "{'f': 'aba'}", true},
    {B, "{'f': [{'wildcard': '*ab*ab'}]}", "{'f': 'abab'}", true},
    {B, "{'f': [{'wildcard': '*ab*ab'}]}", "{'f': 'ab'}", false},
    {B, "{'f': [{'wildcard': 'a\\\\*b'}]}", "{'f': 'a*b'}", true},
    {B, "{'f': [{'wildcard': 'a\\\\*b'}]}", "{'f': 'aXb'}", false},
    {B, "{'f': [{'wildcard': 'a\\\\\\\\*'}]}", "{'f': 'a\\\\\\\\z'}", true},
    {B, "{'f': [{'wildcard': 'exact'}]}", "{'f': 'exact'}", true},
    {B, "{'f': [{'wildcard': 'exact'}]}", "{'f': 'exactly'}", false},
    /* middle segments: the leftmost match that leaves room for the last one */
    {B, "{'f': [{'wildcard': 'x*aab*y'}]}", "{'f': 'xaaaby'}", true},
    {B, "{'f': [{'wildcard': 'x*aab*y'}]}", "{'f': 'xaaby'}", true},
    {B, "{'f': [{'wildcard': 'x*aab*y'}]}", "{'f': 'xaaay'}", false},
    {B, "{'f': [{'wildcard': 'x*ab*b'}]}", "{'f': 'xab'}", false},
    {B, "{'f': [{'wildcard': 'x*ab*b'}]}", "{'f': 'xabb'}", true},
    {A, "{'f': [{'wildcard': 'x*aab*y'}]}", "{" SA("f", "[\\'xaa\\\\u0061by\\']") "}", true},
    {A, "{'f': [{'wildcard': 'x*ab*b'}]}", "{" SA("f", "[\\'xa\\\\u0062b\\']") "}", true},
    {A, "{'f': [{'wildcard': 'x*aab*y'}]}", "{" SA("f", "[\\'xaa\\\\u0061y\\']") "}", false},
    {A, "{'f': [{'wildcard': '*a\\\\\\\\b*'}]}", "{" SA("f", "[\\'xa\\\\\\\\by\\']") "}", true},
    {A, "{'source': [{'wildcard': 'Simple*Service'}]}",
     "{" S("source", "Simple Notification Service") "}", true},
    {A, "{'f': [{'wildcard': '*.png'}]}", "{" SA("f", "[\\'x\\', \\'\\\\u0061.png\\']") "}", true},
};

/* ---- numeric ---- */

static const struct row numeric_rows[] = {
    /* numeric-value-matching, exact matching */
    {A, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{" N("price_usd", "301.5") "}", true},
    {A, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{" N("price_usd", "3.015e2") "}", true},
    {A, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{" N("price_usd", "301.6") "}", false},
    {A, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{" S("price_usd", "301.5") "}", false},
    {B, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{'price_usd': 301.5}", true},
    {B, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{'price_usd': 3.015e2}", true},
    {B, "{'price_usd': [{'numeric': ['=', 301.5]}]}", "{'price_usd': '301.5'}", false},
    /* value range matching */
    {B, "{'price_usd': [{'numeric': ['<', 0]}]}", "{'price_usd': -1}", true},
    {B, "{'price_usd': [{'numeric': ['<', 0]}]}", "{'price_usd': 0}", false},
    {B, "{'price_usd': [{'numeric': ['<', 0]}]}", "{'price_usd': 5}", false},
    {A, "{'price_usd': [{'numeric': ['<', 0]}]}", "{" N("price_usd", "-0.5") "}", true},
    {B, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{'price_usd': 0}", false},
    {B, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{'price_usd': 0.00001}", true},
    {B, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{'price_usd': 75}", true},
    {B, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{'price_usd': 150}", true},
    {B, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{'price_usd': 150.00001}", false},
    {A, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{" N("price_usd", "150") "}", true},
    {A, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{" N("price_usd", "1.5e2") "}", true},
    {A, "{'price_usd': [{'numeric': ['>', 0, '<=', 150]}]}", "{" N("price_usd", "151") "}", false},
    {B, "{'p': [{'numeric': ['>=', 100, '<', 200]}]}", "{'p': 100}", true},
    {B, "{'p': [{'numeric': ['>=', 100, '<', 200]}]}", "{'p': 200}", false},
    {B, "{'p': [{'numeric': ['>=', 100]}]}", "{'p': 99.99999}", false},
    {B, "{'p': [{'numeric': ['<=', 5]}]}", "{'p': 5}", true},
    {B, "{'p': [{'numeric': ['>', 100]}]}", "{'p': [1, 200]}", true},
    {A, "{'p': [{'numeric': ['<=', 5]}]}", "{" SA("p", "[\\'a\\', 3]") "}", true},
    {A, "{'p': [{'numeric': ['<=', 5]}]}", "{" SA("p", "[\\'3\\']") "}", false},
    /* five decimals of accuracy; values outside -1e9..1e9 and non-numbers do not match */
    {B, "{'p': [{'numeric': ['=', 0.000001]}]}", "{'p': 0}", true},
    {B, "{'p': [{'numeric': ['>', 0]}]}", "{'p': 2e9}", false},
    {B, "{'p': [{'numeric': ['<', 0]}]}", "{'p': -1000000001}", false},
    {B, "{'p': [{'numeric': ['<=', 1000000000]}]}", "{'p': 1000000000}", true},
    {A, "{'p': [{'numeric': ['>', 0]}]}", "{" N("p", "abc") "}", false},
    {A, "{'p': [{'numeric': ['>', 0]}]}", "{" N("p", " 5") "}", false},
    {A, "{'p': [{'numeric': ['>', 0]}]}", "{" N("p", "0x10") "}", false},
    {A, "{'p': [{'numeric': ['>', 0]}]}", "{" N("p", "inf") "}", false},
    {B, "{'p': [{'numeric': ['>', 0]}]}", "{'p': true}", false},
};

/* ---- exists ---- */

#define STORE_FANS "{" S("store", "fans") ", " SA("ci", "[\\'baseball\\', \\'basketball\\']") "}"
#define NO_STORE   "{" SA("ci", "[\\'baseball\\', \\'basketball\\']") "}"

static const struct row exists_rows[] = {
    /* attribute-key-matching */
    {A, "{'store': [{'exists': true}]}", STORE_FANS, true},
    {A, "{'store': [{'exists': true}]}", NO_STORE, false},
    {B, "{'store': [{'exists': true}]}", "{'store': 'fans', 'ci': ['baseball', 'basketball']}",
     true},
    {B, "{'store': [{'exists': true}]}", "{'ci': ['baseball', 'basketball']}", false},
    {A, "{'store': [{'exists': false}]}", STORE_FANS, false},
    {A, "{'store': [{'exists': false}]}", NO_STORE, true},
    {B, "{'store': [{'exists': false}]}", "{'store': 'fans', 'ci': ['baseball', 'basketball']}",
     false},
    {B, "{'store': [{'exists': false}]}", "{'ci': ['baseball', 'basketball']}", true},
    /* SNS (recorded): exists applies to Number attributes too */
    {A, "{'store': [{'exists': true}]}", "{" N("store", "99") ", " N("def", "99") "}", true},
    /* "exists": false needs at least one attribute; Binary attributes are ignored */
    {A, "{'store': [{'exists': false}]}", "{}", false},
    {A, "{'store': [{'exists': false}]}", "null", false},
    {A, "{'store': [{'exists': false}]}", "{" BIN("img") "}", false},
    {A, "{'img': [{'exists': true}]}", "{" BIN("img") "}", false},
    {A, "{'img': [{'exists': false}]}", "{" BIN("img") ", " S("x", "y") "}", true},
    /* the value must be non-null and non-empty */
    {B, "{'store': [{'exists': true}]}", "{'store': null}", false},
    {B, "{'store': [{'exists': true}]}", "{'store': ''}", false},
    {B, "{'store': [{'exists': true}]}", "{'store': []}", false},
    {B, "{'store': [{'exists': true}]}", "{'store': [null, 'x']}", true},
    {B, "{'store': [{'exists': true}]}", "{'store': 0}", true},
    {B, "{'store': [{'exists': true}]}", "{'store': false}", true},
    {B, "{'store': [{'exists': false}]}", "{'store': null}", true},
    {A, "{'store': [{'exists': true}]}", "{" SA("store", "[]") "}", false},
    /* only leaves exist: an object value is an intermediate node */
    {B, "{'store': [{'exists': false}]}", "{'store': {'c1': 100}}", true},
    {B, "{'store': [{'exists': true}]}", "{'store': {'c1': 100}}", false},
    {B, "{'a': {'b': [{'exists': true}]}}", "{'a': {'b': 1}}", true},
    {B, "{'a': {'b': [{'exists': true}]}}", "{'a': 1}", false},
    {B, "{'a': {'b': [{'exists': false}]}}", "{'a': [{'c': 1}, {'c': 2}]}", true},
    {B, "{'a': {'b': [{'exists': false}]}}", "{'a': [{'c': 1}, {'b': 2}]}", false},
};

/* ---- cidr ---- */

static const struct row cidr_rows[] = {
    /* string-value-matching, IP address matching */
    {A, "{'source_ip': [{'cidr': '10.0.0.0/24'}]}", "{" S("source_ip", "10.0.0.0") "}", true},
    {A, "{'source_ip': [{'cidr': '10.0.0.0/24'}]}", "{" S("source_ip", "10.0.0.255") "}", true},
    {A, "{'source_ip': [{'cidr': '10.0.0.0/24'}]}", "{" S("source_ip", "10.1.1.0") "}", false},
    {B, "{'source_ip': [{'cidr': '10.0.0.0/24'}]}", "{'source_ip': '10.0.0.0'}", true},
    {B, "{'source_ip': [{'cidr': '10.0.0.0/24'}]}", "{'source_ip': '10.0.0.255'}", true},
    {B, "{'source_ip': [{'cidr': '10.0.0.0/24'}]}", "{'source_ip': '10.1.1.0'}", false},
    /* /0, /32, host bits, garbage */
    {B, "{'ip': [{'cidr': '0.0.0.0/0'}]}", "{'ip': '203.0.113.9'}", true},
    {B, "{'ip': [{'cidr': '0.0.0.0/0'}]}", "{'ip': '::1'}", false},
    {B, "{'ip': [{'cidr': '192.168.1.1/32'}]}", "{'ip': '192.168.1.1'}", true},
    {B, "{'ip': [{'cidr': '192.168.1.1/32'}]}", "{'ip': '192.168.1.2'}", false},
    {B, "{'ip': [{'cidr': '10.0.0.77/24'}]}", "{'ip': '10.0.0.3'}", true},
    {B, "{'ip': [{'cidr': '10.0.0.0/9'}]}", "{'ip': '10.127.255.255'}", true},
    {B, "{'ip': [{'cidr': '10.0.0.0/9'}]}", "{'ip': '10.128.0.0'}", false},
    {B, "{'ip': [{'cidr': '10.0.0.0/8'}]}", "{'ip': 'hello'}", false},
    {B, "{'ip': [{'cidr': '10.0.0.0/8'}]}", "{'ip': '10.0.0.1 '}", false},
    {B, "{'ip': [{'cidr': '10.0.0.0/8'}]}", "{'ip': '010.0.0.1'}", false},
    {B, "{'ip': [{'cidr': '10.0.0.0/8'}]}", "{'ip': 10}", false},
    /* IPv6 */
    {B, "{'ip': [{'cidr': '2001:db8::/32'}]}", "{'ip': '2001:db8::1'}", true},
    {B, "{'ip': [{'cidr': '2001:db8::/32'}]}", "{'ip': '2001:db8:ffff::1'}", true},
    {B, "{'ip': [{'cidr': '2001:db8::/32'}]}", "{'ip': '2001:db9::1'}", false},
    {B, "{'ip': [{'cidr': '2001:db8::/32'}]}", "{'ip': '10.0.0.1'}", false},
    {B, "{'ip': [{'cidr': '::1/128'}]}", "{'ip': '::1'}", true},
    {B, "{'ip': [{'cidr': '::1/128'}]}", "{'ip': '0:0:0:0:0:0:0:1'}", true},
    {B, "{'ip': [{'cidr': '::1/128'}]}", "{'ip': '::2'}", false},
    {B, "{'ip': [{'cidr': '::/0'}]}", "{'ip': '2001:db8::1'}", true},
    {B, "{'ip': [{'cidr': '::/0'}]}", "{'ip': '10.0.0.1'}", false},
    {A, "{'ip': [{'cidr': 'fe80::/10'}]}", "{" S("ip", "fe80::1") "}", true},
    {A, "{'ip': [{'cidr': 'fe80::/10'}]}", "{" S("ip", "fec0::1") "}", false},
    {A, "{'ip': [{'cidr': '10.0.0.0/24'}]}", "{" SA("ip", "[\\'1.2.3.4\\', \\'10.0.0.9\\']") "}",
     true},
};

/* ---- $or ---- */

#define OR_CW                                                                     \
    "{'source': ['aws.cloudwatch'], '$or': [{'metricName': ['CPUUtilization']}, " \
    "{'namespace': ['AWS/EC2']}]}"
#define OR_PARALLEL                                                            \
    "{'$or': [{'metricName': ['CPUUtilization', 'ReadLatency']}, "             \
    "{'namespace': ['AWS/EC2', 'AWS/ES']}], 'detail': {'scope': ['Service'], " \
    "'$or': [{'source': ['aws.cloudwatch']}, {'type': ['CloudWatch Alarm State Change']}]}}"
#define OR_NESTED                                                                                \
    "{'source': ['aws.cloudwatch'], '$or': [{'metricName': ['CPUUtilization', 'ReadLatency']}, " \
    "{'metricType': ['MetricType'], '$or': [{'metricId': [1234, 4321]}, "                        \
    "{'spaceId': [1000, 2000, 3000]}]}]}"
#define CWASC "'CloudWatch Alarm State Change'"

static const struct row or_rows[] = {
    /* and-or-logic, OR operator */
    {A, OR_CW, "{" S("source", "aws.cloudwatch") ", " S("metricName", "CPUUtilization") "}", true},
    {A, OR_CW, "{" S("source", "aws.cloudwatch") ", " S("namespace", "AWS/EC2") "}", true},
    {A, OR_CW, "{" S("source", "aws.cloudwatch") "}", false},
    {A, OR_CW, "{" S("metricName", "CPUUtilization") ", " S("namespace", "AWS/EC2") "}", false},
    {B, OR_CW, "{'source': 'aws.cloudwatch', 'metricName': 'CPUUtilization'}", true},
    {B, OR_CW, "{'source': 'aws.cloudwatch', 'namespace': 'AWS/EC2'}", true},
    {B, OR_CW, "{'source': 'aws.cloudwatch', 'namespace': 'AWS/ES'}", false},
    /* parallel OR, with an $or nested under a key */
    {B, OR_PARALLEL,
     "{'metricName': 'CPUUtilization', 'detail': {'scope': 'aws.cloudwatch', "
     "'type': " CWASC "}}",
     false},
    {B, OR_PARALLEL,
     "{'metricName': 'CPUUtilization', 'detail': {'scope': 'Service', 'type': 'CPUUtilization'}}",
     false},
    {B, OR_PARALLEL, "{'metricName': 'CPUUtilization', 'detail': {'type': " CWASC "}}", false},
    {B, OR_PARALLEL, "{'metricName': 'CPUUtilization', 'detail': {'scope': 'Service'}}", false},
    {B, OR_PARALLEL, "{'metricName': 'CPUUtilization', 'scope': 'Service'}", false},
    {B, OR_PARALLEL,
     "{'metricName': 'CPUUtilization', 'detail': {'scope': 'Service', 'source': 'aws.cloudwatch'}}",
     true},
    {B, OR_PARALLEL,
     "{'metricName': 'ReadLatency', 'detail': {'scope': 'Service', 'source': 'aws.cloudwatch'}}",
     true},
    {B, OR_PARALLEL,
     "{'namespace': 'AWS/EC2', 'detail': {'scope': 'Service', 'source': 'aws.cloudwatch'}}", true},
    {B, OR_PARALLEL,
     "{'namespace': 'AWS/ES', 'detail': {'scope': 'Service', 'source': 'aws.cloudwatch'}}", true},
    {B, OR_PARALLEL,
     "{'metricName': 'CPUUtilization', 'detail': {'scope': 'Service', 'type': " CWASC "}}", true},
    {B, OR_PARALLEL, "{'metricName': 'AWS/EC2', 'detail': {'scope': 'Service', 'type': " CWASC "}}",
     false},
    {B, OR_PARALLEL,
     "{'namespace': 'CPUUtilization', 'detail': {'scope': 'Service', 'type': " CWASC "}}", false},
    /* an $or inside an $or branch */
    {A, OR_NESTED,
     "{" S("source", "aws.cloudwatch") ", " S("metricType", "MetricType") ", " N("spaceId",
                                                                                 "2000") "}",
     true},
    {A, OR_NESTED, "{" S("source", "aws.cloudwatch") ", " S("metricType", "MetricType") "}", false},
    {A, OR_NESTED, "{" S("source", "aws.cloudwatch") ", " N("metricId", "1234") "}", false},
    {A, OR_NESTED, "{" S("source", "aws.cloudwatch") ", " S("metricName", "ReadLatency") "}", true},
    {B, OR_NESTED, "{'source': 'aws.cloudwatch', 'metricType': 'MetricType', 'metricId': 4321}",
     true},
    {B, OR_NESTED, "{'source': 'aws.cloudwatch', 'metricType': 'MetricType', 'metricId': 1}",
     false},
    /* "$or" is an ordinary key unless it holds two or more objects without operator names */
    {B, "{'$or': [{'prefix': 'a'}, {'suffix': 'z'}]}", "{'$or': 'abc'}", true},
    {B, "{'$or': [{'prefix': 'a'}, {'suffix': 'z'}]}", "{'$or': 'xyz'}", true},
    {B, "{'$or': [{'prefix': 'a'}, {'suffix': 'z'}]}", "{'$or': 'mmm'}", false},
    {B, "{'$or': ['x']}", "{'$or': 'x'}", true},
};

/* ---- Nested keys (payload-based filtering) ---- */

#define S3_POLICY                                                     \
    "{'Records': {'s3': {'object': {'key': [{'prefix': 'auto-'}]}}, " \
    "'eventName': [{'prefix': 'ObjectCreated:'}]}}"
#define S3_EVENT(name, key)                                                             \
    "{'Records': [{'eventSource': 'aws:s3', 'eventName': '" name "', "                  \
    "'s3': {'bucket': {'name': 'insurance-bucket-demo'}, 'object': {'key': '" key "', " \
    "'size': 17}}}]}"

static const struct row nested_rows[] = {
    /* payload-based filtering (Amazon's S3 example; SNS's recorded behaviour) */
    {B, S3_POLICY, S3_EVENT("ObjectCreated:Put", "auto-insurance-2314.xml"), true},
    {B, S3_POLICY, S3_EVENT("ObjectRemoved:Delete", "auto-insurance-2314.xml"), false},
    {B, S3_POLICY, S3_EVENT("ObjectCreated:Put", "home-insurance-2314.xml"), false},
    {B, S3_POLICY,
     "{'Records': [{'eventName': 'ObjectCreated:Put', 's3': {'object': [[{'key': "
     "'auto-insurance-2314.xml', 'size': 17}]]}}, {'eventName': 'ObjectRemoved:Delete', "
     "'s3': {'object': {'key': 'home-insurance-2314.xml', 'size': 17}}}]}",
     true},
    {B, "{'order': {'status': ['paid']}}", "{'order': {'status': 'paid'}}", true},
    {B, "{'order': {'status': ['paid']}}", "{'order': {'status': 'open'}}", false},
    {B, "{'order': {'status': ['paid']}}", "{'order': 'paid'}", false},
    {B, "{'order': {'status': ['paid']}}", "{'status': 'paid'}", false},
    {B, "{'order': {'status': ['paid']}}", "{'order': [{'status': 'open'}, {'status': 'paid'}]}",
     true},
    /* dotted keys are the same path as nesting, in policies and in bodies */
    {B, "{'object': {'nested': ['string.value']}}", "{'object': {'nested': 'string.value'}}", true},
    {B, "{'object': {'nested': ['string.value']}}", "{'object.nested': 'string.value'}", true},
    {B, "{'object': {'nested': ['string.value']}}", "{'object': {'nested': 'test-auto'}}", false},
    {B, "{'object.nested.test': ['string.value']}",
     "{'object': {'nested': {'test': 'string.value'}}}", true},
    {B, "{'object.nested.test': ['string.value']}", "{'object.nested.test': 'string.value'}", true},
    {B, "{'object.nested.test': ['string.value']}", "{'object.nested': {'test': 'string.value'}}",
     true},
    {B, "{'object.nested.test': ['string.value']}", "{'object': {'nested.test': 'string.value'}}",
     true},
    {B, "{'object.nested.test': ['string.value']}",
     "{'object': {'nested': {'test': 'string.notvalue'}}}", false},
    /* arrays in bodies: a match on any element */
    {B, "{'headers': {'route-to': ['queue1']}}", "{'headers': {'route-to': ['queue3']}}", false},
    {B, "{'headers': {'route-to': ['queue1']}}", "{'headers': {'route-to': ['queue1']}}", true},
    {B, "{'headers': {'route-to': ['queue1']}}", "{'headers': {'route-to': ['queue2']}}", false},
    {B, "{'headers': {'route-to': ['queue1']}}", "{'headers': {'route-to': ['queue1', 'queue2']}}",
     true},
    {B, "{'a': ['x']}", "{'a': [['y', ['x']]]}", true},
    {B, "{'a': ['x']}", "{'a': [{'b': 'x'}]}", false},
    /* payload filtering needs a JSON object body */
    {B, "{'a': ['x']}", "'x'", false},
    {B, "{'a': ['x']}", "[{'a': 'x'}]", false},
    {B, "{'a': ['x']}", "null", false},
    /* attribute names may contain dots: a plain lookup, not a path */
    {A, "{'a.b': ['x']}", "{" S("a.b", "x") "}", true},
    {A, "{'a.b': ['x']}", "{'a': {'b': {'type': 'String', 'value': 'x'}}}", false},
};

/* ---- String.Array values: the in-place scanner ---- */

static const struct row array_rows[] = {
    {A, "{'c': ['rugby']}", "{" SA("c", "[ \\'golf\\' , \\'rugby\\' ]") "}", true},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\'") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\'] x") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\', ]") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "\\'rugby\\'") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rug\\\\qby\\']") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'a\\', [\\'rugby\\']]") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[{\\'k\\': \\'rugby\\'}]") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\', {\\'k\\': [1, {}]}, [], true]") "}", true},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\', {\\'k\\' 1}]") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\', tru]") "}", false},
    {A, "{'c': ['rugby']}", "{" SA("c", "[\\'rugby\\', 1.2.3]") "}", false},
    {A, "{'c': ['rugby']}", "{" S("c", "[\\'rugby\\']") "}", false},
    {A, "{'c': ['rugby']}", "{" T("c", "String.Array.tag", "[\\'rugby\\']") "}", true},
    /* escapes inside elements: a quote, a surrogate pair, a backslash */
    {A, "{'q': ['say \\'hi\\'']}", "{" SA("q", "[\\'say \\\\\\'hi\\\\\\'\\']") "}", true},
    {A, "{'q': ['\xf0\x9f\x98\x80']}", "{" SA("q", "[\\'\\\\ud83d\\\\ude00\\']") "}", true},
    {A, "{'q': ['a\\\\b']}", "{" SA("q", "[\\'a\\\\\\\\b\\']") "}", true},
    {A, "{'q': ['a\\nb']}", "{" SA("q", "[\\'a\\\\nb\\']") "}", true},
    {A, "{'q': ['ab']}", "{" SA("q", "[\\'a\\\\nb\\']") "}", false},
    /* a malformed array is an invalid attribute: no condition on it holds, not even
     * exists:false or anything-but (SNS filters the message out) */
    {A, "{'c': [{'exists': false}]}", "{" SA("c", "red") "," S("d", "x") "}", false},
    {A, "{'c': [{'exists': true}]}", "{" SA("c", "[\\'red\\'") "}", false},
    {A, "{'c': [{'anything-but': 'blue'}]}", "{" SA("c", "red") "}", false},
    {A, "{'c': [{'exists': false}]}", "{" SA("c", "[]") "," S("d", "x") "}", true},
};

START_TEST(test_doc_examples)
{
    CHECK_ROWS(doc_example_rows);
}
END_TEST

START_TEST(test_exact)
{
    CHECK_ROWS(exact_rows);
}
END_TEST

START_TEST(test_anything_but)
{
    CHECK_ROWS(anything_but_rows);
}
END_TEST

START_TEST(test_prefix)
{
    CHECK_ROWS(prefix_rows);
}
END_TEST

START_TEST(test_suffix)
{
    CHECK_ROWS(suffix_rows);
}
END_TEST

START_TEST(test_equals_ignore_case)
{
    CHECK_ROWS(nocase_rows);
}
END_TEST

START_TEST(test_wildcard)
{
    CHECK_ROWS(wildcard_rows);
}
END_TEST

START_TEST(test_numeric)
{
    CHECK_ROWS(numeric_rows);
}
END_TEST

START_TEST(test_exists)
{
    CHECK_ROWS(exists_rows);
}
END_TEST

START_TEST(test_cidr)
{
    CHECK_ROWS(cidr_rows);
}
END_TEST

START_TEST(test_or)
{
    CHECK_ROWS(or_rows);
}
END_TEST

START_TEST(test_nested)
{
    CHECK_ROWS(nested_rows);
}
END_TEST

START_TEST(test_string_array)
{
    CHECK_ROWS(array_rows);
}
END_TEST

/* ---- Invalid policies ---- */

struct bad_row {
    enum filter_scope scope;
    const char *policy;
    const char *fragment; /* expected in the error message */
};

static const struct bad_row bad_rows[] = {
    {A, "[]", "must be a JSON object"},
    {A, "'text'", "must be a JSON object"},
    {A, "{'key_a': 'value_one'}", "key_a: must be an object or an array"},
    {A, "{'key': 5}", "key: must be an object or an array"},
    {A, "{'key': []}", "key: empty arrays are not allowed"},
    {A, "{'key': [['value']]}", "key: match value must be"},
    {A, "{'key': [{'wrong-operator': true}]}", "key: unrecognized match type wrong-operator"},
    {A, "{'key': [{'exact': 'x'}]}", "unrecognized match type exact"},
    {A, "{'key': [{'suffix': 'value', 'prefix': 'value2'}]}", "only one key allowed"},
    {A, "{'key': [{}]}", "only one key allowed"},
    {A, "{'key': {'suffix': 'value'}}",
     "key: filter policy scope MessageAttributes does not "
     "support nested"},
    {A, "{'key': [{'suffix': 100}]}", "key: suffix match pattern must be a string"},
    {A, "{'key': [{'suffix': null}]}", "suffix match pattern must be a string"},
    {A, "{'key': [{'suffix': []}]}", "suffix match pattern must be a string"},
    {A, "{'key': [{'prefix': ['a']}]}", "prefix match pattern must be a string"},
    {A, "{'key': [{'equals-ignore-case': 5}]}", "equals-ignore-case match pattern must be"},
    {A, "{'key': [{'wildcard': 1}]}", "wildcard match pattern must be a string"},
    {A, "{'key': [{'wildcard': 'a**b'}]}", "consecutive wildcard characters at pos 3"},
    {A, "{'key': [{'wildcard': 'a\\\\b'}]}", "invalid escape at pos 2"},
    {A, "{'key': [{'wildcard': 'ab\\\\'}]}", "invalid escape at pos 3"},
    {A, "{'fare': [{'numeric': []}]}", "fare: numeric needs an operator and a number"},
    {A, "{'fare': [{'numeric': 5}]}", "fare: numeric needs an operator and a number"},
    {A, "{'fare': [{'numeric': [1, '<=']}]}", "fare: numeric needs an operator and a number"},
    {A, "{'key': [{'numeric': ['operator']}]}", "unrecognized numeric operator operator"},
    {A, "{'key': [{'numeric': ['==', 1]}]}", "unrecognized numeric operator =="},
    {A, "{'key': [{'numeric': ['=', '000']}]}", "value of equals must be numeric"},
    {A, "{'key': [{'numeric': ['>=']}]}", "value of >= must be numeric"},
    {A, "{'key': [{'numeric': ['=', 1, 2]}]}", "too many elements in numeric expression"},
    {A, "{'key': [{'numeric': ['<', 100, '>', 10]}]}", "too many elements in numeric expression"},
    {A, "{'key': [{'numeric': ['>=', 1, '>', 2]}]}", "bad numeric range operator >"},
    {A, "{'key': [{'numeric': ['>', 3, '<', 1]}]}", "bottom must be less than top"},
    {A, "{'key': [{'numeric': ['>', 3, '<=', 3]}]}", "bottom must be less than top"},
    /* bounds that no multiple of 1e-5 (what values are matched as) lies between */
    {A, "{'key': [{'numeric': ['>', 1.000001, '<', 1.000004]}]}",
     "leaves no number between its bounds once they are rounded"},
    {A, "{'key': [{'numeric': ['>=', 1.000001, '<', 1.000004]}]}",
     "leaves no number between its bounds once they are rounded"},
    {A, "{'key': [{'numeric': ['>', 1.000001, '<=', 1.000004]}]}",
     "leaves no number between its bounds once they are rounded"},
    /* both bounds round to 0.00001, though 0.00001 lies between them as written */
    {A, "{'key': [{'numeric': ['>', 0.000005, '<', 0.000015]}]}", "a numeric range from 5e-06 to 1.5e-05 leaves no number"},
    {A, "{'key': [{'numeric': ['>', 20, '<=']}]}", "value of <= must be numeric"},
    {A, "{'key': [{'numeric': ['>', 20, 30]}]}", "bad value in numeric range"},
    {A, "{'key': [{'numeric': ['>', 20, 'test']}]}", "bad numeric range operator test"},
    {A, "{'key': [{'numeric': ['>', '20', '<', '30']}]}", "value of > must be numeric"},
    {A, "{'key': [{'numeric': ['>', 20, '<', '30']}]}", "value of < must be numeric"},
    {A, "{'key': [{'numeric': ['>', 20, '<', 30, '<', 50]}]}", "too many terms"},
    {A, "{'key': [{'numeric': ['=', 1e10]}]}", "key: numbers must be between"},
    {A, "{'key': [{'numeric': ['>', -1000000001]}]}", "numbers must be between"},
    {A, "{'key': [1000000001]}", "key: numbers must be between"},
    {A, "{'key': [{'anything-but': [2e9]}]}", "numbers must be between"},
    {A, "{'key': [{'exists': null}]}", "exists match pattern must be either true or false"},
    {A, "{'key': [{'exists': 'no'}]}", "exists match pattern must be either true or false"},
    {A, "{'key': [{'anything-but': {'wrong-operator': null}}]}",
     "unsupported anything-but pattern: wrong-operator"},
    {A, "{'key': [{'anything-but': {'exists': false}}]}",
     "unsupported anything-but pattern: "
     "exists"},
    {A, "{'key': [{'anything-but': {'equals-ignore-case': 'x'}}]}",
     "unsupported anything-but pattern: equals-ignore-case"},
    {A, "{'key': [{'anything-but': {'prefix': false}}]}", "prefix match pattern must be a string"},
    {A, "{'key': [{'anything-but': {'prefix': ''}}]}", "anything-but prefix must not be empty"},
    {A, "{'key': [{'anything-but': {'prefix': 'a', 'suffix': 'b'}}]}", "only one key allowed"},
    {A, "{'key': [{'anything-but': ['a', 1]}]}", "only strings or only numbers"},
    {A, "{'key': [{'anything-but': [1, 'a']}]}", "only strings or only numbers"},
    {A, "{'key': [{'anything-but': []}]}", "anything-but list must not be empty"},
    {A, "{'key': [{'anything-but': [true]}]}", "anything-but values must be strings or numbers"},
    {A, "{'key': [{'anything-but': null}]}", "anything-but needs"},
    {A, "{'key': [{'cidr': 5}]}", "cidr match pattern must be a string"},
    {A, "{'key': [{'cidr': '10.0.0.0'}]}", "one '/' required"},
    {A, "{'key': [{'cidr': '10.0.0.0/24/1'}]}", "one '/' required"},
    {A, "{'key': [{'cidr': '10.0.0.0/x'}]}", "mask bits must be an integer"},
    {A, "{'key': [{'cidr': '10.0.0.0/'}]}", "mask bits must be an integer"},
    {A, "{'key': [{'cidr': '10.0.0.0/-1'}]}", "mask bits must be an integer"},
    {A, "{'key': [{'cidr': '10.0.0.0/33'}]}", "mask bits must be an integer"},
    {A, "{'key': [{'cidr': '2001:db8::/129'}]}", "mask bits must be an integer"},
    {A, "{'key': [{'cidr': '10.0.0.256/24'}]}", "not an IPv4 or IPv6 address: 10.0.0.256/24"},
    {A, "{'key': [{'cidr': 'hello/8'}]}", "not an IPv4 or IPv6 address"},
    {A, "{'key': [{'cidr': '/8'}]}", "not an IPv4 or IPv6 address"},
    {A, "{'$or': [{'a': ['x']}]}",
     "$or: unrecognized match type a ($or takes two or more policies)"},
    {B, "{'x': {'$or': [{'a': ['x']}]}}", "x.$or: unrecognized match type a ($or takes two"},
    {A, "{'or': [{'a': ['x']}]}", "or: unrecognized match type a"},
    {A, "{'$or': [{'a': ['x']}, {'b': 'y'}]}", "b: must be an object or an array"},
    {A, "{'$or': [{'a': ['x']}, {}]}", "$or: empty objects are not allowed"},
    {A, "{'$or': [{'a': {'b': ['x']}}, {'c': ['y']}]}", "a: filter policy scope MessageAttributes"},
    {B, "{'object': {}}", "object: empty objects are not allowed"},
    {B, "{'a': {'b': 'x'}}", "a.b: must be an object or an array"},
    {B, "{'a': {'b': []}}", "a.b: empty arrays are not allowed"},
    {B, "{'a': {'b': [{'numeric': ['<']}]}}", "a.b: value of < must be numeric"},
    {B, "{'detail': {'$or': [{'x': ['1']}, {}]}}", "detail.$or: empty objects are not allowed"},
};

START_TEST(test_invalid_policies)
{
    for (size_t i = 0; i < NROWS(bad_rows); i++) {
        const struct bad_row *r = &bad_rows[i];
        char err[256] = "unset";
        struct filter_policy *f = compile_sq(r->policy, r->scope, err, sizeof err);
        ck_assert_msg(f == NULL, "bad_rows[%zu]: %s was accepted", i, r->policy);
        ck_assert_msg(strstr(err, r->fragment) != NULL,
                      "bad_rows[%zu]: %s: error \"%s\" lacks \"%s\"", i, r->policy, err,
                      r->fragment);
    }
}
END_TEST

/* ---- Limits ---- */

/* {"key": ["v0", "v1", ...]} fragments. */
static void add_key(json_t *obj, const char *key, int values)
{
    json_t *arr = json_array();
    for (int i = 0; i < values; i++) {
        char v[32];
        snprintf(v, sizeof v, "v%d", i);
        json_array_append_new(arr, json_string(v));
    }
    json_object_set_new(obj, key, arr);
}

/* Compiles policy (taking it), returns the combinations or -1 with err filled. */
static int combinations_of(json_t *policy, enum filter_scope scope, char *err, size_t errlen)
{
    struct filter_policy *f = filter_compile_new(policy, scope, err, errlen);
    json_decref(policy);
    int n = f ? filter_combinations(f) : -1;
    filter_free(f);
    return n;
}

START_TEST(test_five_keys)
{
    char err[256];
    json_t *p = json_object();
    const char *keys[] = {"k1", "k2", "k3", "k4", "k5", "k6"};
    for (int i = 0; i < 5; i++)
        add_key(p, keys[i], 1);
    ck_assert_int_eq(combinations_of(json_deep_copy(p), A, err, sizeof err), 1);
    add_key(p, keys[5], 1);
    ck_assert_int_eq(combinations_of(p, A, err, sizeof err), -1);
    ck_assert_str_eq(err, "k6: a filter policy can have at most 5 keys");

    /* with the body scope only top-level keys count: the constraints page's example has four
     * (state, severity, message, finding), whatever finding holds; a sixth top-level key is
     * refused, named */
    json_t *finding = sq_json("{'state': ['SUCCESS'], 'severity': [{'exists': true}], "
                              "'message': [{'exists': true}], 'finding': {'standard_control': "
                              "[{'exists': true}], 'region': [{'exists': true}], 'account': "
                              "[{'exists': true}]}}");
    ck_assert_int_eq(combinations_of(finding, B, err, sizeof err), 1 * 1 * 1 * 2 * 2 * 2);
    finding = sq_json("{'state': ['SUCCESS'], 'severity': [{'exists': true}], "
                      "'message': [{'exists': true}], 'finding': {'region': [{'exists': true}]}, "
                      "'team': ['a'], 'zone': {'id': ['1']}}");
    ck_assert_int_eq(combinations_of(finding, B, err, sizeof err), -1);
    ck_assert_str_eq(err, "zone: a filter policy can have at most 5 keys");

    /* the same key in several $or branches counts once; distinct keys add up */
    ck_assert_int_eq(combinations_of(sq_json("{'$or': [{'a': ['1'], 'b': ['1'], 'c': ['1']}, "
                                             "{'a': ['2'], 'b': ['2'], 'c': ['2']}]}"),
                                     A, err, sizeof err),
                     2);
    ck_assert_int_eq(combinations_of(sq_json("{'$or': [{'a': ['1'], 'b': ['1'], 'c': ['1']}, "
                                             "{'d': ['2'], 'e': ['2'], 'f': ['2']}]}"),
                                     A, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "at most 5 keys"));
}
END_TEST

START_TEST(test_150_combinations)
{
    char err[256];
    json_t *p = json_object();
    add_key(p, "a", 150);
    ck_assert_int_eq(combinations_of(p, A, err, sizeof err), 150);
    p = json_object();
    add_key(p, "a", 151);
    ck_assert_int_eq(combinations_of(p, A, err, sizeof err), -1);
    ck_assert_str_eq(err, "filter policy is too complex: 151 combinations, at most 150");

    p = json_object();
    add_key(p, "a", 10);
    add_key(p, "b", 15);
    ck_assert_int_eq(combinations_of(p, A, err, sizeof err), 150);
    p = json_object();
    add_key(p, "a", 10);
    add_key(p, "b", 16);
    ck_assert_int_eq(combinations_of(p, A, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "160 combinations"));
}
END_TEST

START_TEST(test_combinations_with_or)
{
    char err[256];
    for (int extra = 0; extra <= 1; extra++) {
        json_t *b1 = json_object(), *b2 = json_object(), *p = json_object();
        add_key(b1, "a", 100);
        add_key(b2, "b", 50 + extra);
        json_object_set_new(p, "$or", json_pack("[oo]", b1, b2));
        ck_assert_int_eq(combinations_of(p, A, err, sizeof err), extra ? -1 : 150);
    }
    ck_assert_str_eq(err, "filter policy is too complex: 151 combinations, at most 150");
    /* and-or-logic: (1 * 2) + (1 * 1 * 2) + (1 * 1 * 3) = 7 */
    ck_assert_int_eq(combinations_of(sq_json(OR_NESTED), A, err, sizeof err), 7);
    ck_assert_int_eq(combinations_of(sq_json(OR_CW), A, err, sizeof err), 2);
    /* siblings of an $or multiply its sum: 2 * (1 + 2) */
    ck_assert_int_eq(combinations_of(sq_json("{'x': ['1', '2'], '$or': [{'a': ['1']}, "
                                             "{'b': ['1', '2']}]}"),
                                     A, err, sizeof err),
                     6);
}
END_TEST

START_TEST(test_combinations_documented)
{
    char err[256];
    /* constraints page: 3 x 1 x 2 = 6 */
    ck_assert_int_eq(combinations_of(sq_json("{'key_a': ['value_one', 'value_two', "
                                             "'value_three'], 'key_b': ['value_one'], "
                                             "'key_c': ['value_one', 'value_two']}"),
                                     A, err, sizeof err),
                     6);
    /* payload-based: four values three levels deep, three values two levels deep:
     * 3 x 4 x 2 x 3 = 72 */
    const char *nested = "{'key_a': {'key_b': {'key_c': ['value_one', 'value_two', "
                         "'value_three', 'value_four']}}, 'key_d': {'key_e': ['value_one', "
                         "'value_two', 'value_three']}}";
    ck_assert_int_eq(combinations_of(sq_json(nested), B, err, sizeof err), 72);
    /* SNS (recorded) refuses the same with a third key of three values: 72 x 3 = 216 */
    ck_assert_int_eq(combinations_of(sq_json("{'key_a': {'key_b': {'key_c': ['value_one', "
                                             "'value_two', 'value_three', 'value_four']}}, "
                                             "'key_d': {'key_e': ['value_one', 'value_two', "
                                             "'value_three']}, 'key_f': ['value_one', "
                                             "'value_two', 'value_three']}"),
                                     B, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "216 combinations"));
}
END_TEST

START_TEST(test_deep_policy_is_too_complex)
{
    char err[256];
    json_t *p = json_array();
    json_array_append_new(p, json_string("x"));
    for (int i = 0; i < 400; i++)
        p = json_pack("{so}", "k", p);
    ck_assert_int_eq(combinations_of(p, B, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "at most 32 levels deep"));

    /* $or nested in $or: each level at least doubles the combinations */
    json_t *q = json_pack("{s[s]}", "a", "x");
    for (int i = 0; i < 400; i++)
        q = json_pack("{s[oo]}", "$or", q, json_pack("{s[s]}", "b", "y"));
    ck_assert_int_eq(combinations_of(q, B, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "too complex"));
}
END_TEST

/* A key named by n copies of c. */
static char *repeated(char c, size_t n)
{
    char *k = malloc(n + 1);
    ck_assert_ptr_nonnull(k);
    memset(k, c, n);
    k[n] = '\0';
    return k;
}

/* Bounds on what one message may cost to match: the path of a key (its length, and in the body
 * the dots, each a lookup to try), a wildcard pattern's length and an anything-but list's. */
START_TEST(test_bounds_of_a_policy)
{
    char err[256];
    char *k = repeated('k', FILTER_MAX_PATH_BYTES);
    ck_assert_int_eq(combinations_of(json_pack("{s[s]}", k, "x"), A, err, sizeof err), 1);
    free(k);
    k = repeated('k', FILTER_MAX_PATH_BYTES + 1);
    ck_assert_int_eq(combinations_of(json_pack("{s[s]}", k, "x"), A, err, sizeof err), -1);
    ck_assert_str_eq(err, "a key's path can be at most 1024 bytes long");
    free(k);

    /* 32 levels of a body path are fine, 33 are not, whether nested or dotted */
    json_t *p = json_pack("[s]", "x");
    for (int i = 0; i < 32; i++)
        p = json_pack("{so}", "k", p);
    ck_assert_int_gt(combinations_of(json_deep_copy(p), B, err, sizeof err), 0);
    ck_assert_int_eq(combinations_of(json_pack("{so}", "k", p), B, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "at most 32 levels deep"));
    k = repeated('.', FILTER_MAX_PATH_DOTS + 2); /* a and 32 dots */
    k[0] = 'a';
    ck_assert_int_eq(combinations_of(json_pack("{s[s]}", k, "x"), B, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "at most 32 levels deep"));
    /* an attribute's name may hold dots: it is looked up whole */
    ck_assert_int_eq(combinations_of(json_pack("{s[s]}", k, "x"), A, err, sizeof err), 1);
    free(k);

    char *w = repeated('a', FILTER_MAX_WILDCARD);
    w[0] = '*';
    ck_assert_int_eq(
        combinations_of(json_pack("{s[{ss}]}", "f", "wildcard", w), A, err, sizeof err), 1);
    free(w);
    w = repeated('a', FILTER_MAX_WILDCARD + 1);
    ck_assert_int_eq(
        combinations_of(json_pack("{s[{ss}]}", "f", "wildcard", w), A, err, sizeof err), -1);
    ck_assert_str_eq(err, "f: a wildcard pattern can be at most 256 bytes long");
    free(w);

    json_t *but = json_array();
    for (int i = 0; i < FILTER_MAX_BUT_VALUES; i++)
        json_array_append_new(but, json_integer(i));
    ck_assert_int_eq(
        combinations_of(json_pack("{s[{sO}]}", "f", "anything-but", but), A, err, sizeof err), 1);
    json_array_append_new(but, json_integer(-1));
    ck_assert_int_eq(
        combinations_of(json_pack("{s[{so}]}", "f", "anything-but", but), A, err, sizeof err), -1);
    ck_assert_str_eq(err, "f: a policy's anything-but lists can have at most 1000 values in all");
    /* in all: two lists of 600 are too many (every array element was looked up in both) */
    json_t *half = json_array();
    for (int i = 0; i < 600; i++)
        json_array_append_new(half, json_integer(i));
    ck_assert_int_eq(
        combinations_of(json_pack("{s[{sO}{sO}]}", "f", "anything-but", half, "anything-but", half),
                        A, err, sizeof err),
        -1);
    ck_assert_str_eq(err, "f: a policy's anything-but lists can have at most 1000 values in all");
    /* a policy stored before that rule still compiles (it met the rule of its day) */
    json_t *stored = json_pack("{s[{sO}{sO}]}", "f", "anything-but", half, "anything-but", half);
    struct filter_policy *old = filter_compile(stored, A, err, sizeof err);
    ck_assert_msg(old != NULL, "%s", err);
    filter_free(old);
    json_decref(stored);
    ck_assert_int_eq(
        combinations_of(json_pack("{s[{so}]}", "f", "anything-but", half), A, err, sizeof err), 1);
}
END_TEST

/* filter_fits: SNS's 256 KB, as compact JSON. */
START_TEST(test_policy_size)
{
    char *v = repeated('v', FILTER_MAX_POLICY_BYTES - 12);
    json_t *p = json_pack("{s[s]}", "k", v); /* {"k":["…"]}: 10 bytes around the value */
    ck_assert(filter_fits(p));
    json_decref(p);
    v[FILTER_MAX_POLICY_BYTES - 13] = '\0';
    json_t *q = json_pack("{s[ss]}", "k", v, "w");
    ck_assert(!filter_fits(q)); /* 2 more bytes than the limit... */
    json_decref(q);
    free(v);
}
END_TEST

/* A middle wildcard segment is searched in linear time: a pattern of a and then b against a
 * long run of a used to cost the product of the two lengths. (Not timed: it must finish.) */
START_TEST(test_wildcard_search_is_linear)
{
    char err[64];
    char *w = repeated('a', FILTER_MAX_WILDCARD);
    w[0] = 'x';
    w[1] = '*';
    w[FILTER_MAX_WILDCARD - 2] = 'b';
    w[FILTER_MAX_WILDCARD - 1] = '*';
    json_t *p = json_pack("{s[{ss}]}", "f", "wildcard", w);
    struct filter_policy *f = filter_compile(p, A, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    char *value = repeated('a', 4u << 20);
    value[0] = 'x';
    json_t *msg = json_pack("{s{ssss}}", "f", "type", "String", "value", value);
    for (int i = 0; i < 3; i++)
        ck_assert(!filter_match_attributes(f, msg));
    json_decref(msg);
    /* the same in a String.Array element with an escape: decoded on the fly, still linear */
    memcpy(value, "[\"\\u0078", 8);
    strcpy(value + (4u << 20) - 3, "\"]");
    msg = json_pack("{s{ssss}}", "f", "type", "String.Array", "value", value);
    for (int i = 0; i < 3; i++)
        ck_assert(!filter_match_attributes(f, msg));
    json_decref(msg);
    free(value);
    filter_free(f);
    json_decref(p);
    free(w);
}
END_TEST

/* A body policy of n $or branches, branch b matching the number b under path; *policy is its
 * JSON (caller decrefs after filter_free). */
static struct filter_policy *compile_or_branches(const char *path, int n, json_t **policy)
{
    json_t *branches = json_array();
    for (int b = 0; b < n; b++)
        json_array_append_new(branches, json_pack("{s[i]}", path, b));
    *policy = json_pack("{so}", "$or", branches);
    char err[128];
    struct filter_policy *f = filter_compile(*policy, B, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    return f;
}

/* A body path walks what the body holds, not its objects times the path's length: a path of
 * 991 bytes (32 keys of 30 bytes, the deepest allowed) under 70 $or branches, against an array
 * of 100,000 empty objects, was scanned byte by byte for every object and branch (7e9 steps).
 * The values the path reaches still match: objects whose one key leads on are followed, and
 * the last one's leaf holds the number of a branch. */
START_TEST(test_long_path_through_many_objects_is_linear)
{
    enum { KEYS = 32, KEY = 30, BRANCHES = 70, ELEMENTS = 100000 };
    char *path = repeated('a', KEYS * (KEY + 1) - 1); /* "aaa….aaa….…" */
    for (int i = KEY; i < KEYS * (KEY + 1) - 1; i += KEY + 1)
        path[i] = '.';
    json_t *p;
    struct filter_policy *f = compile_or_branches(path, BRANCHES, &p);
    json_t *empties = json_array();
    for (int i = 0; i < ELEMENTS; i++)
        json_array_append_new(empties, json_object());
    char first[KEY + 1];
    memcpy(first, path, KEY);
    first[KEY] = '\0';
    json_t *body = json_pack("{so}", first, empties);
    for (int i = 0; i < 3; i++)
        ck_assert(!filter_match_body(f, body));
    json_decref(body);
    json_t *steps = json_array();
    for (int i = 0; i < ELEMENTS; i++)
        json_array_append_new(steps, json_pack("{s{}}", first));
    json_t *last = json_object(); /* the rest of the path as one flattened key */
    json_object_set_new(last, path + KEY + 1, json_integer(BRANCHES - 1));
    json_array_append_new(steps, last);
    body = json_pack("{so}", first, steps);
    ck_assert(filter_match_body(f, body));
    json_decref(body);
    filter_free(f);
    json_decref(p);
    free(path);
}
END_TEST

/* The same with objects of one key under a path with no dot left: "a." and a 1,000-byte key,
 * under 150 $or branches, against 100,000 {"b": 0}. Each object cost a lookup of the whole
 * key (hashed) per branch: 1.5e10 bytes hashed a publish. An object holding that key still
 * leads to its value. */
START_TEST(test_long_key_through_many_one_key_objects_is_linear)
{
    enum { KEY = 1000, BRANCHES = 150, ELEMENTS = 100000 };
    char *path = repeated('x', KEY + 2);
    path[0] = 'a';
    path[1] = '.';
    json_t *p;
    struct filter_policy *f = compile_or_branches(path, BRANCHES, &p);
    json_t *ones = json_array();
    for (int i = 0; i < ELEMENTS; i++)
        json_array_append_new(ones, json_pack("{si}", "b", 0));
    json_t *body = json_pack("{so}", "a", ones);
    for (int i = 0; i < 5; i++) /* 7 s each before (2026-11-29): the 30 s timeout */
        ck_assert(!filter_match_body(f, body));
    json_array_append_new(ones, json_pack("{si}", path + 2, BRANCHES - 1));
    ck_assert(filter_match_body(f, body));
    json_decref(body);
    filter_free(f);
    json_decref(p);
    free(path);
}
END_TEST

/* ---- API edges ---- */

START_TEST(test_empty_policy_matches_everything)
{
    char err[64];
    struct filter_policy *f = compile_sq("{}", A, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(filter_combinations(f), 1);
    ck_assert(filter_match_attributes(f, NULL));
    json_t *s = json_string("not an object");
    ck_assert(filter_match_body(f, s));
    json_decref(s);
    filter_free(f);
}
END_TEST

START_TEST(test_null_attributes_and_scalar_body)
{
    char err[64];
    struct filter_policy *f = compile_sq("{'a': [{'exists': false}]}", B, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert(!filter_match_attributes(f, NULL));
    json_t *body = json_object();
    ck_assert(filter_match_body(f, body));
    json_decref(body);
    json_t *arr = json_array();
    ck_assert(!filter_match_body(f, arr));
    ck_assert(!filter_match_attributes(f, arr));
    json_decref(arr);
    filter_free(f);
    filter_free(NULL);
    ck_assert(!filter_match_body(NULL, NULL));
    ck_assert_int_eq(filter_combinations(NULL), 0);
}
END_TEST

START_TEST(test_error_buffer_handling)
{
    char small[12];
    memset(small, 'Z', sizeof small);
    struct filter_policy *f = compile_sq("{'a_long_key_name': [{'numeric': []}]}", A, small, 8);
    ck_assert_ptr_null(f);
    ck_assert_uint_eq(strlen(small), 7);
    ck_assert_int_eq(small[8], 'Z');
    ck_assert_ptr_null(compile_sq("{'a': []}", A, NULL, 0));
    char err[64] = "stale";
    f = compile_sq("{'a': ['x']}", A, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(err, "");
    filter_free(f);
    ck_assert_ptr_null(filter_compile(NULL, A, err, sizeof err));
    ck_assert_str_eq(err, "a filter policy must be a JSON object");
}
END_TEST

/* The compiled policy keeps no pointer into the JSON it came from. */
START_TEST(test_policy_outlives_its_json)
{
    char err[64];
    json_t *p = sq_json("{'a': ['x', {'prefix': 'pre'}], 'n': [{'numeric': ['>', 1]}]}");
    struct filter_policy *f = filter_compile(p, B, err, sizeof err);
    json_decref(p);
    ck_assert_ptr_nonnull(f);
    json_t *m = sq_json("{'a': 'prefix', 'n': 2}");
    ck_assert(filter_match_body(f, m));
    json_decref(m);
    m = sq_json("{'a': 'y', 'n': 2}");
    ck_assert(!filter_match_body(f, m));
    json_decref(m);
    filter_free(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("filter");

    TCase *ops = tcase_create("operators");
    tcase_add_test(ops, test_doc_examples);
    tcase_add_test(ops, test_exact);
    tcase_add_test(ops, test_anything_but);
    tcase_add_test(ops, test_prefix);
    tcase_add_test(ops, test_suffix);
    tcase_add_test(ops, test_equals_ignore_case);
    tcase_add_test(ops, test_wildcard);
    tcase_add_test(ops, test_numeric);
    tcase_add_test(ops, test_exists);
    tcase_add_test(ops, test_cidr);
    tcase_add_test(ops, test_or);
    tcase_add_test(ops, test_nested);
    tcase_add_test(ops, test_string_array);
    suite_add_tcase(s, ops);

    TCase *compile = tcase_create("compile");
    tcase_add_test(compile, test_invalid_policies);
    tcase_add_test(compile, test_five_keys);
    tcase_add_test(compile, test_150_combinations);
    tcase_add_test(compile, test_combinations_with_or);
    tcase_add_test(compile, test_combinations_documented);
    tcase_add_test(compile, test_deep_policy_is_too_complex);
    tcase_add_test(compile, test_bounds_of_a_policy);
    tcase_add_test(compile, test_policy_size);
    tcase_add_test(compile, test_wildcard_search_is_linear);
    tcase_add_test(compile, test_long_path_through_many_objects_is_linear);
    tcase_add_test(compile, test_long_key_through_many_one_key_objects_is_linear);
    suite_add_tcase(s, compile);

    TCase *api = tcase_create("api");
    tcase_add_test(api, test_empty_policy_matches_everything);
    tcase_add_test(api, test_null_attributes_and_scalar_body);
    tcase_add_test(api, test_error_buffer_handling);
    tcase_add_test(api, test_policy_outlives_its_json);
    suite_add_tcase(s, api);

    return s;
}

int main(void)
{
    return unit_run(suite());
}
