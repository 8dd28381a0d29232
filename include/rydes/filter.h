/* Amazon SNS subscription filter policies: a policy (a JSON object) is compiled once into an
 * immutable structure and then matched against message attributes or JSON message bodies, many
 * times and from any thread, without allocating. Owns the SNS policy language (exact strings and
 * numbers, anything-but, prefix, suffix, equals-ignore-case, wildcard, numeric ranges, exists,
 * cidr, $or, nested body keys) and its limits (5 keys, 150 combinations, numbers within 1e9,
 * 256 KB, and the bounds below that keep a message's matching cost small). */
#ifndef RYDES_FILTER_H
#define RYDES_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define FILTER_MAX_KEYS         5   /* distinct attribute names / leaf paths in one policy */
#define FILTER_MAX_COMBINATIONS 150 /* SNS's complexity limit */
#define FILTER_NUMBER_LIMIT     1e9 /* numbers are within -1e9..1e9, five decimals of accuracy */
/* Bounds on the work one message costs, beyond SNS's documented limits (its 256 KB included) */
#define FILTER_MAX_POLICY_BYTES (256 * 1024) /* the policy as compact JSON (SNS's limit) */
#define FILTER_MAX_PATH_BYTES   1024         /* an attribute name, or a dotted path in the body */
#define FILTER_MAX_PATH_DOTS    31           /* dots in a body path (each is a lookup to try) */
#define FILTER_MAX_WILDCARD     256          /* bytes of a wildcard pattern */
#define FILTER_MAX_BUT_VALUES   1000         /* anything-but values in a new policy, in all */

enum filter_scope { FILTER_SCOPE_ATTRIBUTES, FILTER_SCOPE_BODY };

struct filter_policy; /* compiled, immutable, shareable between threads */

/* Compiles policy (a JSON object) for scope. On failure returns NULL and writes a message for
 * the API client into err (what is wrong and where, e.g. "fare: numeric needs an operator and a
 * number"). The caller frees the result with filter_free. policy stays the caller's; nothing in
 * the result points into it. An empty object compiles to a policy that matches every message. */
struct filter_policy *filter_compile(json_t *policy, enum filter_scope scope, char *err,
                                     size_t errlen);

/* filter_compile for a policy being saved: it also meets the limits that came after policies
 * were stored (FILTER_MAX_BUT_VALUES in all, not per list), which stored ones keep meeting as
 * they were saved. */
struct filter_policy *filter_compile_new(json_t *policy, enum filter_scope scope, char *err,
                                         size_t errlen);

/* Is policy at most FILTER_MAX_POLICY_BYTES as compact JSON? Checked where a policy is accepted,
 * not by filter_compile: a stored policy is not measured again (its numbers may print longer
 * after a round trip through jsonb). */
bool filter_fits(json_t *policy);

/* Frees a compiled policy; NULL is allowed. */
void filter_free(struct filter_policy *p);

/* Matches message attributes: a JSON object {name: {"type": "String"|"Number"|"Binary"|
 * "String.Array" (also with a ".label" suffix), "value": string}}; NULL means no attributes.
 * Binary attributes (and unknown types) are ignored, as SNS does. String conditions match String
 * values and String.Array string elements; numeric conditions match Number values and
 * String.Array number elements. Allocation-free; attributes stays the caller's. */
bool filter_match_attributes(const struct filter_policy *p, json_t *attributes);

/* Matches a message body (any JSON value). Payload filtering needs a JSON object body: any other
 * value matches only the empty policy. A key's value that is an array matches when one of its
 * elements does (arrays of objects are searched for the nested keys). Allocation-free. */
bool filter_match_body(const struct filter_policy *p, json_t *body);
/* Could a body-scope policy look into this message body (len bytes of text)? Only a JSON object
 * can be: callers parse the body only then. */
bool filter_body_is_object(const char *body, size_t len);

/* Number of combinations the policy has (SNS's complexity measure: per key the number of values
 * times the nesting depth of the key, multiplied over the keys and summed over $or branches). */
int filter_combinations(const struct filter_policy *p);

#endif
