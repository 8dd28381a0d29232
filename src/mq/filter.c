/* SNS subscription filter policies; see include/rydes/filter.h.
 *
 * A policy compiles into a tree held in one arena: a node is a conjunction of leaves (a key path
 * and its conditions, any one of which may hold) and of $or groups (any one branch node may
 * match). Nested body keys are flattened into dotted paths ("order.status"), which is also how
 * SNS compares them: the body key "order.status" matches that path as well. Numbers compare as
 * integers in units of 1e-5 (SNS's five decimals of accuracy). Matching walks the tree and the
 * message on the stack only: String.Array values are scanned in place, and JSON-escaped strings
 * inside them are decoded byte by byte as they are compared. */
#include "rydes/filter.h"

#include "rydes/mem.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUMBER_SCALE   1e5 /* policy and message numbers are compared in units of 1e-5 */
#define MAX_SCAN_DEPTH 32  /* nesting accepted inside a String.Array value */

/* ---- Arena: everything a compiled policy owns, freed at once ---- */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct arena {
    struct chunk *head;
};

/* Zeroed storage for n bytes, aligned for any type; lives until the arena is freed. */
static void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        struct chunk *c = xmalloc(sizeof *c + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (unsigned char *)a->head->data + a->head->used;
    a->head->used += n;
    return memset(p, 0, n);
}

static void *arena_array(struct arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / 2 / size)
        rydes_oom();
    return arena_alloc(a, count * size);
}

/* ---- The compiled form ---- */

struct str {
    const char *p;
    size_t n;
};

enum cond_kind {
    C_STRING,
    C_NUMBER,
    C_TRUE,
    C_FALSE,
    C_NULL,
    C_PREFIX,
    C_SUFFIX,
    C_NOCASE,
    C_WILDCARD,
    C_NUMERIC,
    C_EXISTS,
    C_CIDR,
    C_BUT,
};

enum but_kind { BUT_STRINGS, BUT_NUMBERS, BUT_PREFIX, BUT_SUFFIX };

struct range {
    int64_t lo, hi;
    bool has_lo, has_hi, lo_open, hi_open;
};

struct cidr {
    unsigned char addr[16]; /* only the first bits count */
    int family, bits;
};

struct wild {
    struct str *segs; /* the literal text between the stars */
    size_t nsegs, minlen;
};

struct but {
    enum but_kind kind;
    size_t n;
    struct str *strs; /* BUT_STRINGS; the one pattern of BUT_PREFIX/BUT_SUFFIX */
    int64_t *nums;    /* BUT_NUMBERS */
};

struct cond {
    enum cond_kind kind;
    union {
        struct str s; /* C_STRING, C_PREFIX, C_SUFFIX, C_NOCASE */
        int64_t num;  /* C_NUMBER */
        bool exists;
        struct range range;
        struct cidr cidr;
        struct wild wild;
        struct but but;
    } u;
};

struct leaf {
    const char *path; /* attribute name, or dotted path into the body */
    size_t plen;
    size_t pdots; /* the dots in path */
    struct cond *conds;
    size_t nconds;
};

struct or_group;

struct node {
    struct leaf *leaves;
    size_t nleaves;
    struct or_group *ors;
    size_t nors;
};

struct or_group {
    struct node *branches;
    size_t n;
};

struct filter_policy {
    struct arena arena;
    struct node root;
    int combinations;
    bool empty;      /* {}: no filtering at all */
    bool has_absent; /* uses {"exists": false}, which needs a non-empty set of attributes */
};

/* ---- Compiler state and errors ---- */

struct compiler {
    struct arena *arena;
    enum filter_scope scope;
    char *err;
    size_t errlen;
    struct str keys[FILTER_MAX_KEYS];
    size_t nkeys;
    size_t but_total; /* anything-but values so far, against FILTER_MAX_BUT_VALUES */
    bool is_new;      /* filter_compile_new: the limits new policies meet */
    bool has_absent;
};

/* Writes "where: message" (or just the message) into the caller's buffer; returns false. */
static bool fail(struct compiler *c, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(struct compiler *c, const char *where, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return false;
    int k = where ? snprintf(c->err, c->errlen, "%s: ", where) : 0;
    size_t used = k < 0 ? 0 : (size_t)k < c->errlen ? (size_t)k : c->errlen - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + used, c->errlen - used, fmt, ap);
    va_end(ap);
    return false;
}

static struct str copy_str(struct compiler *c, json_t *s)
{
    size_t n = json_string_length(s);
    char *p = arena_alloc(c->arena, n + 1);
    memcpy(p, json_string_value(s), n);
    return (struct str){p, n};
}

/* ---- Numbers ---- */

/* x in units of 1e-5; false when x is outside SNS's range (or not a number at all). */
static bool quantize(double x, int64_t *out)
{
    if (!(x >= -FILTER_NUMBER_LIMIT && x <= FILTER_NUMBER_LIMIT))
        return false;
    double y = x * NUMBER_SCALE;
    *out = (int64_t)(y < 0 ? y - 0.5 : y + 0.5);
    return true;
}

static bool policy_number(struct compiler *c, const char *where, json_t *v, int64_t *out)
{
    if (quantize(json_number_value(v), out))
        return true;
    return fail(c, where, "numbers must be between -1000000000 and 1000000000");
}

static bool digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Length of the number at p: [+-] digits [. digits] [e [+-] digits]; 0 when there is none. */
static size_t number_len(const char *p, const char *end)
{
    const char *s = p;
    size_t digits = 0;
    if (s < end && (*s == '-' || *s == '+'))
        s++;
    for (; s < end && digit(*s); s++)
        digits++;
    if (s < end && *s == '.')
        for (s++; s < end && digit(*s); s++)
            digits++;
    if (digits == 0)
        return 0;
    if (s < end && (*s == 'e' || *s == 'E')) {
        const char *e = s + 1;
        if (e < end && (*e == '+' || *e == '-'))
            e++;
        if (e == end || !digit(*e))
            return 0;
        for (s = e; s < end && digit(*s); s++)
            ;
    }
    return (size_t)(s - p);
}

/* Length of the JSON number at p (RFC 8259: -? (0 | [1-9] digits) [. digits] [e [+-] digits]);
 * 0 when there is none. Array values are JSON text: number_len's looser forms (+5, 05, .5, 5.)
 * are for Number attributes, whose text the API checked as a number. */
static size_t json_number_len(const char *p, const char *end)
{
    const char *s = p;
    if (s < end && *s == '-')
        s++;
    if (s == end || !digit(*s))
        return 0;
    if (*s++ != '0')
        while (s < end && digit(*s))
            s++;
    if (s < end && *s == '.') {
        if (++s == end || !digit(*s))
            return 0;
        while (s < end && digit(*s))
            s++;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        if (++s < end && (*s == '+' || *s == '-'))
            s++;
        if (s == end || !digit(*s))
            return 0;
        while (s < end && digit(*s))
            s++;
    }
    return (size_t)(s - p);
}

/* ---- String conditions ---- */

static bool op_string(struct compiler *c, const char *where, const char *op, json_t *v,
                      struct str *out)
{
    if (!json_is_string(v))
        return fail(c, where, "%s match pattern must be a string", op);
    *out = copy_str(c, v);
    return true;
}

static bool op_prefix(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    out->kind = C_PREFIX;
    return op_string(c, where, "prefix", v, &out->u.s);
}

static bool op_suffix(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    out->kind = C_SUFFIX;
    return op_string(c, where, "suffix", v, &out->u.s);
}

static bool op_nocase(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    out->kind = C_NOCASE;
    return op_string(c, where, "equals-ignore-case", v, &out->u.s);
}

/* Counts the stars of a wildcard pattern, refusing "**" and escapes other than \* and \\. */
static bool wild_check(struct compiler *c, const char *where, struct str pat, size_t *stars)
{
    bool after_star = false;
    for (size_t i = 0; i < pat.n; i++) {
        if (pat.p[i] == '\\') {
            if (i + 1 == pat.n || (pat.p[i + 1] != '*' && pat.p[i + 1] != '\\'))
                return fail(c, where,
                            "invalid escape at pos %zu of the wildcard pattern (only \\* "
                            "and \\\\ are allowed)",
                            i + 1);
            i++;
            after_star = false;
        } else if (pat.p[i] == '*') {
            if (after_star)
                return fail(c, where, "consecutive wildcard characters at pos %zu", i + 1);
            (*stars)++;
            after_star = true;
        } else {
            after_star = false;
        }
    }
    return true;
}

/* Splits a wildcard pattern at its unescaped stars into literal segments. */
static bool op_wildcard(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    struct str pat = {NULL, 0};
    size_t stars = 0;
    out->kind = C_WILDCARD;
    if (!op_string(c, where, "wildcard", v, &pat) || !wild_check(c, where, pat, &stars))
        return false;
    if (pat.n > FILTER_MAX_WILDCARD)
        return fail(c, where, "a wildcard pattern can be at most %d bytes long",
                    FILTER_MAX_WILDCARD);
    struct wild *w = &out->u.wild;
    w->nsegs = stars + 1;
    w->segs = arena_array(c->arena, w->nsegs, sizeof *w->segs);
    char *lit = arena_alloc(c->arena, pat.n + 1);
    struct str *seg = w->segs;
    seg->p = lit;
    for (size_t i = 0; i < pat.n; i++) {
        if (pat.p[i] == '*') {
            (++seg)->p = lit;
            continue;
        }
        i += pat.p[i] == '\\';
        *lit++ = pat.p[i];
        seg->n++;
        w->minlen++;
    }
    return true;
}

/* ---- numeric ---- */

enum num_op { OP_EQ, OP_LT, OP_LE, OP_GT, OP_GE, OP_BAD };

static enum num_op num_op(json_t *v)
{
    static const char *const names[] = {"=", "<", "<=", ">", ">="};
    const char *s = json_string_value(v);
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, names[i]) == 0)
            return (enum num_op)i;
    return OP_BAD;
}

/* Reads the number that follows the operator at index i of the numeric array. */
static bool numeric_value(struct compiler *c, const char *where, json_t *arr, size_t i, int64_t *q,
                          double *raw)
{
    const char *op = json_string_value(json_array_get(arr, i));
    json_t *v = json_array_get(arr, i + 1);
    if (!json_is_number(v))
        return fail(c, where, "value of %s must be numeric", strcmp(op, "=") ? op : "equals");
    *raw = json_number_value(v);
    return policy_number(c, where, v, q);
}

static void range_bound(struct range *r, enum num_op op, int64_t q)
{
    if (op == OP_EQ || op == OP_GT || op == OP_GE) {
        r->has_lo = true;
        r->lo = q;
        r->lo_open = op == OP_GT;
    }
    if (op == OP_EQ || op == OP_LT || op == OP_LE) {
        r->has_hi = true;
        r->hi = q;
        r->hi_open = op == OP_LT;
    }
}

/* The "<" or "<=" half of [">", a, "<=", b]. */
/* The upper bound of a range whose lower bound is lo (lo_q as matched: > when lo_open). */
static bool numeric_upper(struct compiler *c, const char *where, json_t *arr, double lo,
                          int64_t lo_q, bool lo_open, struct range *r)
{
    json_t *second = json_array_get(arr, 2);
    enum num_op op = num_op(second);
    if (!json_is_string(second))
        return fail(c, where, "bad value in numeric range: < or <= must follow the lower bound");
    if (op != OP_LT && op != OP_LE)
        return fail(c, where,
                    "bad numeric range operator %s (a range is > or >= a number, then "
                    "< or <= a number)",
                    json_string_value(second));
    int64_t q;
    double hi;
    if (!numeric_value(c, where, arr, 2, &q, &hi))
        return false;
    if (json_array_size(arr) > 4)
        return fail(c, where, "too many terms in numeric range expression");
    /* values match as multiples of 1e-5: bounds that leave none of those between them (> 1.000001
     * and < 1.000004 are both 100000) would make a condition nothing can meet (refused in new
     * policies; in a stored one it matches nothing, as it did) */
    if (!(lo < hi))
        return fail(c, where, "bottom must be less than top in a numeric range");
    if (c->is_new && lo_q + lo_open > q - (op == OP_LT))
        return fail(c, where,
                    "a numeric range from %.15g to %.15g leaves no number between its bounds "
                    "once they are rounded to 5 decimal places (the precision numbers match at)",
                    lo, hi);
    range_bound(r, op, q);
    return true;
}

static bool op_numeric(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    json_t *first = json_array_get(v, 0);
    enum num_op op = num_op(first);
    out->kind = C_NUMERIC;
    if (!json_is_array(v) || !json_is_string(first))
        return fail(c, where, "numeric needs an operator and a number");
    if (op == OP_BAD)
        return fail(c, where, "unrecognized numeric operator %s (use =, <, <=, > or >=)",
                    json_string_value(first));
    int64_t q;
    double lo;
    if (!numeric_value(c, where, v, 0, &q, &lo))
        return false;
    range_bound(&out->u.range, op, q);
    if (json_array_size(v) == 2)
        return true;
    if (op != OP_GT && op != OP_GE)
        return fail(c, where,
                    "too many elements in numeric expression (only > and >= start a "
                    "range)");
    return numeric_upper(c, where, v, lo, q, op == OP_GT, &out->u.range);
}

/* ---- exists, cidr ---- */

static bool op_exists(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    if (!json_is_boolean(v))
        return fail(c, where, "exists match pattern must be either true or false");
    out->kind = C_EXISTS;
    out->u.exists = json_is_true(v);
    c->has_absent |= !out->u.exists;
    return true;
}

/* Mask bits: 1 to 3 digits, at most max. */
static bool mask_bits(const char *s, int max, int *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 3 || strspn(s, "0123456789") != n)
        return false;
    *out = atoi(s);
    return *out <= max;
}

/* Parses "address/bits"; returns NULL or what is wrong. */
static const char *cidr_parse(const char *s, struct cidr *out)
{
    const char *slash = strchr(s, '/');
    if (!slash || strchr(slash + 1, '/'))
        return "malformed CIDR, one '/' required";
    char addr[INET6_ADDRSTRLEN];
    size_t n = (size_t)(slash - s);
    if (n >= sizeof addr)
        return "malformed CIDR, not an IPv4 or IPv6 address";
    memcpy(addr, s, n);
    addr[n] = '\0';
    out->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(out->family, addr, out->addr) != 1)
        return "malformed CIDR, not an IPv4 or IPv6 address";
    if (!mask_bits(slash + 1, out->family == AF_INET ? 32 : 128, &out->bits))
        return "malformed CIDR, mask bits must be an integer from 0 to 32 (IPv4) or 128 (IPv6)";
    return NULL;
}

static bool op_cidr(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    if (!json_is_string(v))
        return fail(c, where, "cidr match pattern must be a string");
    out->kind = C_CIDR;
    const char *why = cidr_parse(json_string_value(v), &out->u.cidr);
    return why ? fail(c, where, "%s: %s", why, json_string_value(v)) : true;
}

/* ---- anything-but ---- */

static bool but_item(struct compiler *c, const char *where, json_t *item, size_t i, struct but *b)
{
    if (!json_is_string(item) && !json_is_number(item))
        return fail(c, where, "anything-but values must be strings or numbers");
    if (json_is_string(item) != (b->kind == BUT_STRINGS))
        return fail(c, where, "anything-but list must hold only strings or only numbers");
    if (b->kind == BUT_STRINGS) {
        b->strs[i] = copy_str(c, item);
        return true;
    }
    return policy_number(c, where, item, &b->nums[i]);
}

/* A single value or a list of values, all strings or all numbers. */
static bool but_values(struct compiler *c, const char *where, json_t *v, struct but *b)
{
    bool list = json_is_array(v);
    b->n = list ? json_array_size(v) : 1;
    if (b->n == 0)
        return fail(c, where, "anything-but list must not be empty");
    /* in all, not per list (an array element is looked up in every list a condition names);
     * stored policies saved before that rule meet it per list */
    c->but_total += b->n;
    if (b->n > FILTER_MAX_BUT_VALUES || (c->is_new && c->but_total > FILTER_MAX_BUT_VALUES))
        return fail(c, where, "a policy's anything-but lists can have at most %d values in all",
                    FILTER_MAX_BUT_VALUES);
    b->kind = json_is_string(list ? json_array_get(v, 0) : v) ? BUT_STRINGS : BUT_NUMBERS;
    if (b->kind == BUT_STRINGS)
        b->strs = arena_array(c->arena, b->n, sizeof *b->strs);
    else
        b->nums = arena_array(c->arena, b->n, sizeof *b->nums);
    for (size_t i = 0; i < b->n; i++)
        if (!but_item(c, where, list ? json_array_get(v, i) : v, i, b))
            return false;
    return true;
}

/* {"prefix": "..."} or {"suffix": "..."}. */
static bool but_pattern(struct compiler *c, const char *where, json_t *obj, struct but *b)
{
    if (json_object_size(obj) != 1)
        return fail(c, where, "only one key allowed in anything-but expression");
    void *it = json_object_iter(obj);
    const char *op = json_object_iter_key(it);
    json_t *v = json_object_iter_value(it);
    if (strcmp(op, "prefix") != 0 && strcmp(op, "suffix") != 0)
        return fail(c, where, "unsupported anything-but pattern: %s (use prefix or suffix)", op);
    if (!json_is_string(v))
        return fail(c, where, "%s match pattern must be a string", op);
    if (json_string_length(v) == 0)
        return fail(c, where, "anything-but %s must not be empty", op);
    b->kind = op[0] == 'p' ? BUT_PREFIX : BUT_SUFFIX;
    b->n = 1;
    b->strs = arena_alloc(c->arena, sizeof *b->strs);
    b->strs[0] = copy_str(c, v);
    return true;
}

static bool op_anything_but(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    out->kind = C_BUT;
    if (json_is_object(v))
        return but_pattern(c, where, v, &out->u.but);
    if (json_is_array(v) || json_is_string(v) || json_is_number(v))
        return but_values(c, where, v, &out->u.but);
    return fail(c, where,
                "anything-but needs a string, a number, a list of them, or "
                "{\"prefix\"|\"suffix\": string}");
}

/* ---- Match expressions ---- */

typedef bool (*op_fn)(struct compiler *c, const char *where, json_t *v, struct cond *out);

static const struct {
    const char *name;
    op_fn compile;
} operators[] = {
    {"anything-but", op_anything_but},
    {"cidr", op_cidr},
    {"equals-ignore-case", op_nocase},
    {"exists", op_exists},
    {"numeric", op_numeric},
    {"prefix", op_prefix},
    {"suffix", op_suffix},
    {"wildcard", op_wildcard},
};

#define NOPERATORS (sizeof operators / sizeof operators[0])

static bool compile_operator(struct compiler *c, const char *where, json_t *obj, struct cond *out)
{
    if (json_object_size(obj) != 1)
        return fail(c, where, "only one key allowed in match expression");
    void *it = json_object_iter(obj);
    const char *name = json_object_iter_key(it);
    for (size_t i = 0; i < NOPERATORS; i++)
        if (strcmp(name, operators[i].name) == 0)
            return operators[i].compile(c, where, json_object_iter_value(it), out);
    /* "$or" with one branch is an ordinary key (SNS), whose array holds no policies */
    size_t n = where ? strlen(where) : 0;
    bool lone_or = n >= 3 && strcmp(where + n - 3, "$or") == 0 && (n == 3 || where[n - 4] == '.');
    return fail(c, where, "unrecognized match type %s%s", name,
                lone_or ? " ($or takes two or more policies)" : "");
}

/* One element of a key's array: a literal (string, number, true, false, null) or an operator. */
static bool compile_cond(struct compiler *c, const char *where, json_t *v, struct cond *out)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        out->kind = C_STRING;
        out->u.s = copy_str(c, v);
        return true;
    case JSON_INTEGER:
    case JSON_REAL:
        out->kind = C_NUMBER;
        return policy_number(c, where, v, &out->u.num);
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        out->kind = json_is_true(v) ? C_TRUE : json_is_false(v) ? C_FALSE : C_NULL;
        return true;
    case JSON_OBJECT:
        return compile_operator(c, where, v, out);
    default:
        return fail(c, where,
                    "match value must be a string, number, true, false, null or an "
                    "operator object");
    }
}

/* ---- Policy structure ---- */

enum entry_kind { E_LEAF, E_NESTED, E_OR, E_BAD };

static bool has_operator_key(json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        (void)v;
        for (size_t i = 0; i < NOPERATORS; i++)
            if (strcmp(key, operators[i].name) == 0)
                return true;
    }
    return false;
}

/* SNS takes "$or" as an OR only for an array of at least two objects none of which uses an
 * operator name as a key; otherwise "$or" is an ordinary key. */
static bool is_or(const char *key, json_t *v)
{
    if (strcmp(key, "$or") != 0 || json_array_size(v) < 2)
        return false;
    size_t i;
    json_t *branch;
    json_array_foreach(v, i, branch)
    {
        if (!json_is_object(branch) || has_operator_key(branch))
            return false;
    }
    return true;
}

static enum entry_kind classify(const char *key, json_t *v)
{
    if (is_or(key, v))
        return E_OR;
    if (json_is_object(v))
        return E_NESTED;
    return json_is_array(v) ? E_LEAF : E_BAD;
}

/* Leaves and $or groups of obj and of the objects nested in it (which share its node). Levels
 * past the complexity limit are refused by fill_object, so they are not counted either. */
static void count_entries(json_t *obj, int level, size_t *leaves, size_t *ors)
{
    const char *key;
    json_t *v;
    if (level > FILTER_MAX_COMBINATIONS)
        return;
    json_object_foreach(obj, key, v)
    {
        enum entry_kind kind = classify(key, v);
        *leaves += kind == E_LEAF;
        *ors += kind == E_OR;
        if (kind == E_NESTED)
            count_entries(v, level + 1, leaves, ors);
    }
}

/* prefix.key, or key at the top (prefix.p == NULL), NUL-terminated in the arena. */
static struct str join_path(struct compiler *c, struct str prefix, const char *key)
{
    size_t kn = strlen(key), n = prefix.p ? prefix.n + 1 + kn : kn;
    char *p = arena_alloc(c->arena, n + 1);
    if (prefix.p) {
        memcpy(p, prefix.p, prefix.n);
        p[prefix.n] = '.';
    }
    memcpy(p + n - kn, key, kn);
    return (struct str){p, n};
}

static size_t dots(struct str path)
{
    size_t n = 0;
    for (size_t i = 0; i < path.n; i++)
        n += path.p[i] == '.';
    return n;
}

/* Counts distinct top-level keys against SNS's limit of five. With the body scope, keys nested
 * below a top-level key do not count (SNS's constraints page, "Key counting in filter
 * policies"); the keys of a top-level $or's branches count as top-level keys. */
static bool register_key(struct compiler *c, struct str path)
{
    for (size_t i = 0; i < c->nkeys; i++)
        if (c->keys[i].n == path.n && memcmp(c->keys[i].p, path.p, path.n) == 0)
            return true;
    if (c->nkeys == FILTER_MAX_KEYS)
        return fail(c, path.p, "a filter policy can have at most %d keys", FILTER_MAX_KEYS);
    c->keys[c->nkeys++] = path;
    return true;
}

static bool fill_leaf(struct compiler *c, json_t *arr, struct str path, int depth, struct leaf *l,
                      double *combos)
{
    size_t n = json_array_size(arr);
    if (n == 0)
        return fail(c, path.p, "empty arrays are not allowed");
    l->path = path.p;
    l->plen = path.n;
    l->pdots = dots(path);
    l->conds = arena_array(c->arena, n, sizeof *l->conds);
    for (; l->nconds < n; l->nconds++)
        if (!compile_cond(c, path.p, json_array_get(arr, l->nconds), &l->conds[l->nconds]))
            return false;
    *combos *= (double)n * depth;
    return true;
}

static bool compile_node(struct compiler *c, json_t *obj, struct str prefix, int level, int depth,
                         struct node *out, double *combos);

/* An $or group: the branches' combinations add up. */
static bool fill_or(struct compiler *c, json_t *arr, struct str path, struct str prefix, int level,
                    int depth, struct or_group *g, double *combos)
{
    double sum = 0;
    g->n = json_array_size(arr);
    g->branches = arena_array(c->arena, g->n, sizeof *g->branches);
    for (size_t i = 0; i < g->n; i++) {
        json_t *branch = json_array_get(arr, i);
        double bc;
        if (json_object_size(branch) == 0)
            return fail(c, path.p, "empty objects are not allowed");
        if (!compile_node(c, branch, prefix, level + 1, depth, &g->branches[i], &bc))
            return false;
        sum += bc;
    }
    *combos *= sum;
    return true;
}

static bool fill_object(struct compiler *c, json_t *obj, struct str prefix, int level, int depth,
                        struct node *out, double *combos);

static bool fill_nested(struct compiler *c, json_t *obj, struct str path, int level, int depth,
                        struct node *out, double *combos)
{
    if (c->scope == FILTER_SCOPE_ATTRIBUTES)
        return fail(c, path.p,
                    "filter policy scope MessageAttributes does not support nested "
                    "filter policy (nested keys need the message body scope)");
    if (json_object_size(obj) == 0)
        return fail(c, path.p, "empty objects are not allowed");
    return fill_object(c, obj, path, level + 1, depth + 1, out, combos);
}

static bool fill_entry(struct compiler *c, const char *key, json_t *v, struct str prefix, int level,
                       int depth, struct node *out, double *combos)
{
    struct str path = join_path(c, prefix, key);
    if (path.n > FILTER_MAX_PATH_BYTES)
        return fail(c, NULL, "a key's path can be at most %d bytes long", FILTER_MAX_PATH_BYTES);
    if (c->scope == FILTER_SCOPE_BODY && dots(path) > FILTER_MAX_PATH_DOTS)
        return fail(c, path.p, "a key's path can be at most %d levels deep",
                    FILTER_MAX_PATH_DOTS + 1);
    enum entry_kind kind = classify(key, v);
    if (!prefix.p && kind != E_OR && !register_key(c, path))
        return false;
    switch (kind) {
    case E_LEAF:
        return fill_leaf(c, v, path, depth, &out->leaves[out->nleaves++], combos);
    case E_OR:
        return fill_or(c, v, path, prefix, level, depth, &out->ors[out->nors++], combos);
    case E_NESTED:
        return fill_nested(c, v, path, level, depth, out, combos);
    default:
        return fail(c, path.p, "must be an object or an array");
    }
}

/* Adds obj's keys to out. Each level (nesting or $or) at least doubles or deepens the
 * combinations, so a policy deeper than the limit is too complex anyway. */
static bool fill_object(struct compiler *c, json_t *obj, struct str prefix, int level, int depth,
                        struct node *out, double *combos)
{
    const char *key;
    json_t *v;
    if (level > FILTER_MAX_COMBINATIONS)
        return fail(c, NULL, "filter policy is too complex (more than %d combinations)",
                    FILTER_MAX_COMBINATIONS);
    json_object_foreach(obj, key, v)
    {
        if (!fill_entry(c, key, v, prefix, level, depth, out, combos))
            return false;
    }
    return true;
}

/* A conjunction node for obj, whose keys sit below prefix at the given depth. */
static bool compile_node(struct compiler *c, json_t *obj, struct str prefix, int level, int depth,
                         struct node *out, double *combos)
{
    size_t leaves = 0, ors = 0;
    count_entries(obj, level, &leaves, &ors);
    out->leaves = arena_array(c->arena, leaves, sizeof *out->leaves);
    out->ors = arena_array(c->arena, ors, sizeof *out->ors);
    *combos = 1;
    return fill_object(c, obj, prefix, level, depth, out, combos);
}

static struct filter_policy *compile(json_t *policy, enum filter_scope scope, bool is_new,
                                     char *err, size_t errlen)
{
    struct filter_policy *p = xcalloc(1, sizeof *p);
    struct compiler c = {
        .arena = &p->arena, .scope = scope, .err = err, .errlen = errlen, .is_new = is_new};
    double combos = 1;
    if (err && errlen)
        err[0] = '\0';
    if (!json_is_object(policy)) {
        fail(&c, NULL, "a filter policy must be a JSON object");
    } else if (compile_node(&c, policy, (struct str){NULL, 0}, 0, 1, &p->root, &combos)) {
        if (combos <= FILTER_MAX_COMBINATIONS) {
            p->combinations = (int)combos;
            p->empty = json_object_size(policy) == 0;
            p->has_absent = c.has_absent;
            return p;
        }
        fail(&c, NULL, "filter policy is too complex: %.0f combinations, at most %d",
             combos < 1e15 ? combos : 1e15, FILTER_MAX_COMBINATIONS);
    }
    filter_free(p);
    return NULL;
}

struct filter_policy *filter_compile(json_t *policy, enum filter_scope scope, char *err,
                                     size_t errlen)
{
    return compile(policy, scope, false, err, errlen);
}

struct filter_policy *filter_compile_new(json_t *policy, enum filter_scope scope, char *err,
                                         size_t errlen)
{
    return compile(policy, scope, true, err, errlen);
}

bool filter_fits(json_t *policy)
{
    return json_dumpb(policy, NULL, 0, JSON_COMPACT) <= FILTER_MAX_POLICY_BYTES;
}

void filter_free(struct filter_policy *p)
{
    if (!p)
        return;
    struct chunk *c = p->arena.head;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(p);
}

int filter_combinations(const struct filter_policy *p)
{
    return p ? p->combinations : 0;
}

/* ---- Message text: plain, or JSON-escaped (a string inside a String.Array value) ---- */

struct text {
    const char *p;
    size_t n;
    bool esc; /* p holds the JSON-escaped form, between the quotes */
};

struct cursor {
    const char *p, *end;
    bool esc;
    unsigned char pend[4]; /* rest of a decoded \u escape */
    int npend, ipend;
};

static void cursor_init(struct cursor *c, struct text t)
{
    *c = (struct cursor){.p = t.p, .end = t.p + t.n, .esc = t.esc};
}

static uint32_t hex4(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v * 16 + (uint32_t)(digit(p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
    return v;
}

static int utf8_put(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    int n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (int i = n - 1; i > 0; i--, cp >>= 6)
        out[i] = (unsigned char)(0x80 | (cp & 0x3f));
    out[0] = (unsigned char)((0xf00 >> n) | cp);
    return n;
}

/* Decodes the escape after a backslash (already validated); returns its first byte. */
static int cursor_escape(struct cursor *c)
{
    static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
    char e = *c->p++;
    const char *k = strchr(from, e);
    if (e != 'u')
        return k ? to[k - from] : (unsigned char)e;
    uint32_t cp = hex4(c->p);
    c->p += 4;
    if (cp >= 0xd800 && cp < 0xdc00 && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
        uint32_t lo = hex4(c->p + 2);
        if (lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            c->p += 6;
        }
    }
    if (cp >= 0xd800 && cp < 0xe000)
        cp = 0xfffd;
    c->npend = utf8_put(cp, c->pend);
    c->ipend = 1;
    return c->pend[0];
}

/* The next decoded byte, or -1 at the end. */
static int cursor_next(struct cursor *c)
{
    if (c->ipend < c->npend)
        return c->pend[c->ipend++];
    if (c->p >= c->end)
        return -1;
    unsigned char ch = (unsigned char)*c->p++;
    return c->esc && ch == '\\' ? cursor_escape(c) : ch;
}

static void cursor_skip(struct cursor *c, size_t n)
{
    while (n--)
        cursor_next(c);
}

/* Consumes s.n bytes; true when they are s. */
static bool cursor_match(struct cursor *c, struct str s)
{
    for (size_t i = 0; i < s.n; i++)
        if (cursor_next(c) != (unsigned char)s.p[i])
            return false;
    return true;
}

/* The next code point; -1 at the end. */
static int32_t cursor_cp(struct cursor *c)
{
    int b = cursor_next(c);
    if (b < 0x80)
        return b;
    int extra = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : 1;
    int32_t cp = b & (0x3f >> extra);
    while (extra--)
        cp = (cp << 6) | (cursor_next(c) & 0x3f);
    return cp;
}

static size_t text_len(struct text t)
{
    if (!t.esc)
        return t.n;
    struct cursor c;
    size_t n = 0;
    cursor_init(&c, t);
    while (cursor_next(&c) >= 0)
        n++;
    return n;
}

static bool text_eq(struct text t, struct str s)
{
    if (!t.esc)
        return t.n == s.n && memcmp(t.p, s.p, s.n) == 0;
    struct cursor c;
    cursor_init(&c, t);
    return cursor_match(&c, s) && cursor_next(&c) < 0;
}

static bool text_prefix(struct text t, struct str s)
{
    if (!t.esc)
        return t.n >= s.n && memcmp(t.p, s.p, s.n) == 0;
    struct cursor c;
    cursor_init(&c, t);
    return cursor_match(&c, s);
}

static bool text_suffix(struct text t, struct str s)
{
    size_t len = text_len(t);
    if (len < s.n)
        return false;
    if (!t.esc)
        return memcmp(t.p + len - s.n, s.p, s.n) == 0;
    struct cursor c;
    cursor_init(&c, t);
    cursor_skip(&c, len - s.n);
    return cursor_match(&c, s);
}

/* Simple lower-casing of Latin Extended-A: pairs of upper (first) and lower case letters. */
static int32_t fold_latin_ext(int32_t cp)
{
    if (cp == 0x130 || cp == 0x131 || cp == 0x138 || cp == 0x149 || cp == 0x17f)
        return cp;
    if (cp == 0x178)
        return 0xff;
    bool odd_upper = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e);
    return cp % 2 == odd_upper ? cp + 1 : cp;
}

/* Lower-cases the cased letters of ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic. */
static int32_t fold(int32_t cp)
{
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) ||
        (cp >= 0x391 && cp <= 0x3ab && cp != 0x3a2) || (cp >= 0x410 && cp <= 0x42f))
        return cp + 32;
    if (cp >= 0x400 && cp <= 0x40f)
        return cp + 80;
    return cp >= 0x100 && cp <= 0x17f ? fold_latin_ext(cp) : cp;
}

static bool text_nocase(struct text t, struct str s)
{
    struct cursor a, b;
    cursor_init(&a, t);
    cursor_init(&b, (struct text){s.p, s.n, false});
    for (;;) {
        int32_t x = cursor_cp(&a), y = cursor_cp(&b);
        if (fold(x) != fold(y))
            return false;
        if (x < 0)
            return true;
    }
}

/* Finds s at or after *pos without passing stop; leaves c just after it. Linear in the text
 * either way: memmem where the text has no escapes, else Knuth-Morris-Pratt over the decoded
 * bytes (a segment is at most FILTER_MAX_WILDCARD bytes: its table fits on the stack). */
static bool cursor_find(struct cursor *c, size_t *pos, size_t stop, struct str s)
{
    if (!c->esc && c->ipend == c->npend) {
        const char *hit = *pos + s.n <= stop ? memmem(c->p, stop - *pos, s.p, s.n) : NULL;
        if (!hit)
            return false;
        *pos += (size_t)(hit - c->p) + s.n;
        c->p = hit + s.n;
        return true;
    }
    uint16_t fail[FILTER_MAX_WILDCARD];
    if (s.n == 0 || s.n > FILTER_MAX_WILDCARD) /* (compile refuses longer patterns) */
        return s.n == 0;
    fail[0] = 0;
    for (size_t i = 1, k = 0; i < s.n; i++) {
        while (k && s.p[i] != s.p[k])
            k = fail[k - 1];
        k += s.p[i] == s.p[k];
        fail[i] = (uint16_t)k;
    }
    for (size_t k = 0; *pos < stop;) {
        int b = cursor_next(c);
        (*pos)++;
        while (k && b != (unsigned char)s.p[k])
            k = fail[k - 1];
        k += b == (unsigned char)s.p[k];
        if (k == s.n)
            return true;
    }
    return false;
}

/* First segment anchored at the start, last at the end, the others leftmost in between. */
static bool text_wildcard(struct text t, const struct wild *w)
{
    size_t len = text_len(t), last = w->nsegs - 1;
    if (last == 0)
        return text_eq(t, w->segs[0]);
    if (len < w->minlen)
        return false;
    struct cursor c;
    cursor_init(&c, t);
    if (!cursor_match(&c, w->segs[0]))
        return false;
    size_t pos = w->segs[0].n, stop = len - w->segs[last].n;
    for (size_t i = 1; i < last; i++)
        if (!cursor_find(&c, &pos, stop, w->segs[i]))
            return false;
    cursor_skip(&c, stop - pos);
    return cursor_match(&c, w->segs[last]);
}

static bool prefix_bits_equal(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return false;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return rest == 0 || (a[whole] & mask) == (b[whole] & mask);
}

static bool cidr_contains(const struct cidr *cd, struct text t)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    struct cursor c;
    size_t n = 0;
    int b;
    cursor_init(&c, t);
    while ((b = cursor_next(&c)) > 0 && n + 1 < sizeof buf)
        buf[n++] = (char)b;
    buf[n] = '\0';
    if (b >= 0 || inet_pton(cd->family, buf, addr) != 1)
        return false;
    return prefix_bits_equal(cd->addr, addr, cd->bits);
}

/* ---- Message values ---- */

enum value_type { V_STRING, V_NUMBER, V_TRUE, V_FALSE, V_NULL };

struct value {
    enum value_type type;
    struct text s; /* V_STRING */
    bool num_ok;   /* V_NUMBER within SNS's range */
    int64_t num;
};

typedef bool (*value_fn)(const struct value *v, const void *arg);

/* A number written as text (a Number attribute, an element of a String.Array). */
static void number_value(const char *p, size_t n, struct value *v)
{
    v->type = V_NUMBER;
    v->num_ok = n > 0 && number_len(p, p + n) == n && quantize(strtod(p, NULL), &v->num);
}

static void json_value(json_t *j, struct value *v)
{
    switch (json_typeof(j)) {
    case JSON_STRING:
        v->type = V_STRING;
        v->s = (struct text){json_string_value(j), json_string_length(j), false};
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        v->type = V_NUMBER;
        v->num_ok = quantize(json_number_value(j), &v->num);
        break;
    default:
        v->type = json_is_true(j) ? V_TRUE : json_is_false(j) ? V_FALSE : V_NULL;
    }
}

/* ---- String.Array values: a JSON array scanned in place ---- */

struct scan {
    const char *p, *end;
};

static void scan_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

bool filter_body_is_object(const char *body, size_t len)
{
    struct scan s = {body, body + len};
    scan_ws(&s);
    return s.p < s.end && *s.p == '{';
}

static bool scan_char(struct scan *s, char ch)
{
    scan_ws(s);
    if (s->p == s->end || *s->p != ch)
        return false;
    s->p++;
    return true;
}

/* Steps over the escape at s->p (a backslash). */
static bool scan_escape(struct scan *s)
{
    if (s->end - s->p < 2 || !s->p[1] || !strchr("\"\\/bfnrtu", s->p[1]))
        return false;
    if (s->p[1] != 'u') {
        s->p += 2;
        return true;
    }
    if (s->end - s->p < 6)
        return false;
    for (int i = 2; i < 6; i++)
        if (!s->p[i] || !strchr("0123456789abcdefABCDEF", s->p[i]))
            return false;
    s->p += 6;
    return true;
}

static bool scan_string(struct scan *s, struct text *out)
{
    if (!scan_char(s, '"'))
        return false;
    const char *start = s->p;
    bool esc = false;
    while (s->p < s->end && *s->p != '"') {
        if ((unsigned char)*s->p < 0x20)
            return false;
        if (*s->p != '\\')
            s->p++;
        else if (!scan_escape(s))
            return false;
        else
            esc = true;
    }
    if (s->p == s->end)
        return false;
    *out = (struct text){start, (size_t)(s->p++ - start), esc};
    return true;
}

static bool scan_word(struct scan *s, const char *word, enum value_type type, struct value *v)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    v->type = type;
    return true;
}

static bool scan_array(struct scan *s, int depth, value_fn fn, const void *arg, bool *hit);
static bool scan_object(struct scan *s, int depth);

/* One JSON value; *scalar tells whether v was filled (composites are only stepped over). */
static bool scan_value(struct scan *s, int depth, struct value *v, bool *scalar)
{
    size_t n;
    scan_ws(s);
    *scalar = s->p < s->end && *s->p != '[' && *s->p != '{';
    if (s->p == s->end)
        return false;
    switch (*s->p) {
    case '"':
        v->type = V_STRING;
        return scan_string(s, &v->s);
    case '[':
        return scan_array(s, depth + 1, NULL, NULL, NULL);
    case '{':
        return scan_object(s, depth + 1);
    case 't':
        return scan_word(s, "true", V_TRUE, v);
    case 'f':
        return scan_word(s, "false", V_FALSE, v);
    case 'n':
        return scan_word(s, "null", V_NULL, v);
    default:
        n = json_number_len(s->p, s->end);
        number_value(s->p, n, v);
        s->p += n;
        return n > 0;
    }
}

static bool scan_object(struct scan *s, int depth)
{
    if (depth > MAX_SCAN_DEPTH || !scan_char(s, '{'))
        return false;
    if (scan_char(s, '}'))
        return true;
    do {
        struct value v;
        bool scalar;
        if (!scan_string(s, &v.s) || !scan_char(s, ':') || !scan_value(s, depth, &v, &scalar))
            return false;
    } while (scan_char(s, ','));
    return scan_char(s, '}');
}

/* Steps over an array; with fn, calls it on the scalar elements until it returns true. */
static bool scan_array(struct scan *s, int depth, value_fn fn, const void *arg, bool *hit)
{
    if (depth > MAX_SCAN_DEPTH || !scan_char(s, '['))
        return false;
    if (scan_char(s, ']'))
        return true;
    do {
        struct value v = {0};
        bool scalar;
        if (!scan_value(s, depth, &v, &scalar))
            return false;
        if (fn && scalar && !*hit)
            *hit = fn(&v, arg);
    } while (scan_char(s, ','));
    return scan_char(s, ']');
}

/* True when fn holds for an element of a well-formed JSON array text; a malformed array has
 * no elements at all (it is scanned to the end before it counts). */
static bool array_each(struct text t, value_fn fn, const void *arg)
{
    struct scan s = {t.p, t.p + t.n};
    bool hit = false;
    if (!scan_array(&s, 1, fn, arg, &hit))
        return false;
    scan_ws(&s);
    return s.p == s.end && hit;
}

/* Whether t is one well-formed JSON array. */
static bool array_valid(struct text t)
{
    struct scan s = {t.p, t.p + t.n};
    bool hit = false;
    if (!scan_array(&s, 1, NULL, NULL, &hit))
        return false;
    scan_ws(&s);
    return s.p == s.end;
}

/* ---- Attributes ---- */

enum attr_kind { A_NONE, A_STRING, A_NUMBER, A_STRING_ARRAY, A_NUMBER_ARRAY };

struct attr {
    enum attr_kind kind;
    struct text v;
};

/* After a base type: nothing, or ".label". */
static bool label_ok(const char *rest)
{
    return rest[0] == '\0' || (rest[0] == '.' && rest[1] != '\0');
}

/* Binary and unknown types are A_NONE: SNS ignores them. "Number.Array" is how the SNS
 * documentation writes an array of numbers. */
static enum attr_kind attr_kind(const char *t)
{
    if (strncmp(t, "String", 6) == 0) {
        if (strncmp(t + 6, ".Array", 6) == 0 && label_ok(t + 12))
            return A_STRING_ARRAY;
        return label_ok(t + 6) ? A_STRING : A_NONE;
    }
    if (strncmp(t, "Number", 6) != 0)
        return A_NONE;
    if (strcmp(t + 6, ".Array") == 0)
        return A_NUMBER_ARRAY;
    return label_ok(t + 6) ? A_NUMBER : A_NONE;
}

/* Reads {"type", "value"} by walking the (two) members: cheaper than two hash lookups. */
static struct attr attr_lookup(json_t *attrs, const char *name)
{
    json_t *a = json_object_get(attrs, name), *t = NULL, *v = NULL;
    for (void *it = json_object_iter(a); it; it = json_object_iter_next(a, it)) {
        const char *key = json_object_iter_key(it);
        if (strcmp(key, "type") == 0)
            t = json_object_iter_value(it);
        else if (strcmp(key, "value") == 0)
            v = json_object_iter_value(it);
    }
    struct attr out = {A_NONE, {NULL, 0, false}};
    if (json_is_string(t) && json_is_string(v)) {
        out.kind = attr_kind(json_string_value(t));
        out.v = (struct text){json_string_value(v), json_string_length(v), false};
    }
    return out;
}

static bool attr_each(const struct attr *a, value_fn fn, const void *arg)
{
    struct value v = {.type = V_STRING, .s = a->v};
    switch (a->kind) {
    case A_STRING:
        return fn(&v, arg);
    case A_NUMBER:
        number_value(a->v.p, a->v.n, &v);
        return fn(&v, arg);
    case A_STRING_ARRAY:
    case A_NUMBER_ARRAY:
        return array_each(a->v, fn, arg);
    default:
        return false;
    }
}

/* Does the message carry any attribute SNS looks at? */
static bool any_attribute(json_t *attrs)
{
    const char *name;
    json_t *a;
    json_object_foreach(attrs, name, a)
    {
        (void)name;
        json_t *t = json_object_get(a, "type");
        if (json_is_string(t) && attr_kind(json_string_value(t)) != A_NONE)
            return true;
    }
    return false;
}

/* ---- Body: the values at a dotted path ---- */

#if JANSSON_VERSION_HEX >= 0x020e00
static json_t *object_getn(json_t *obj, const char *key, size_t n)
{
    return json_object_getn(obj, key, n);
}
#else
static json_t *object_getn(json_t *obj, const char *key, size_t n)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (strlen(k) == n && memcmp(k, key, n) == 0)
            return v;
    }
    return NULL;
}
#endif

/* The values of a leaf: scalars, or the scalars inside arrays (objects are not values). */
static bool leaf_each(json_t *j, value_fn fn, const void *arg)
{
    size_t i;
    json_t *e;
    struct value v = {0};
    if (json_is_object(j))
        return false;
    if (!json_is_array(j)) {
        json_value(j, &v);
        return fn(&v, arg);
    }
    json_array_foreach(j, i, e)
    {
        if (leaf_each(e, fn, arg))
            return true;
    }
    return false;
}

static bool path_each(json_t *obj, const char *path, size_t n, size_t ndots, value_fn fn,
                      const void *arg);

/* Below an intermediate key: objects continue the path (ndots dots in its n bytes), arrays are
 * searched element-wise. */
static bool inner_each(json_t *j, const char *path, size_t n, size_t ndots, value_fn fn,
                       const void *arg)
{
    size_t i;
    json_t *e;
    if (json_is_object(j))
        return path_each(j, path, n, ndots, fn, arg);
    json_array_foreach(j, i, e)
    {
        if (inner_each(e, path, n, ndots, fn, arg))
            return true;
    }
    return false;
}

/* The values under child, the value of key path[0..i) (before: the dots in it) of a path of n
 * bytes and ndots dots: child itself when the key is the whole path, else the rest below it. */
static bool path_follow(json_t *child, const char *path, size_t n, size_t ndots, size_t i,
                        size_t before, value_fn fn, const void *arg)
{
    return i == n ? leaf_each(child, fn, arg)
                  : inner_each(child, path + i + 1, n - i - 1, ndots - before - 1, fn, arg);
}

/* Whether going through an object of size keys is cheaper than looking up the ndots + 1 prefixes
 * of a path of n bytes, each hashed whole: a key costs one comparison, mostly a byte or two. */
static bool by_keys(size_t size, size_t n, size_t ndots)
{
    return size <= ndots + 1 || size * 16 < n * (ndots + 1);
}

/* "a.b.c" is looked up as a, "a.b" and "a.b.c" in obj, as SNS flattens dotted keys: one lookup
 * per dot, or, when obj holds few keys for the path's length, by its keys instead, so that a
 * long path through many small objects (an array of thousands of {} or {"b":0}) costs what the
 * objects hold, not their number times the path's length. Each key is compared at most once. */
static bool path_each(json_t *obj, const char *path, size_t n, size_t ndots, value_fn fn,
                      const void *arg)
{
    if (by_keys(json_object_size(obj), n, ndots)) {
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v)
        {
            size_t len = strlen(k); /* keys hold no NUL: jansson refuses one in a key */
            if (len > n || memcmp(k, path, len) != 0 || (len < n && path[len] != '.'))
                continue;
            if (path_follow(v, path, n, ndots, len, dots((struct str){k, len}), fn, arg))
                return true;
        }
        return false;
    }
    for (size_t from = 0, before = 0;; before++) {
        const char *dot = memchr(path + from, '.', n - from);
        size_t i = dot ? (size_t)(dot - path) : n;
        json_t *child = object_getn(obj, path, i);
        if (child && path_follow(child, path, n, ndots, i, before, fn, arg))
            return true;
        if (!dot)
            return false;
        from = i + 1;
    }
}

/* ---- Matching ---- */

struct source {
    json_t *root; /* attributes (or NULL), or the body object */
    bool body;
    bool attrs_present; /* exists:false needs at least one attribute (always true for bodies) */
};

struct values {
    const struct source *src;
    const struct leaf *leaf;
    struct attr attr; /* attributes only */
};

static bool values_each(const struct values *vs, value_fn fn, const void *arg)
{
    if (vs->src->body)
        return path_each(vs->src->root, vs->leaf->path, vs->leaf->plen, vs->leaf->pdots, fn, arg);
    return attr_each(&vs->attr, fn, arg);
}

static bool in_range(const struct range *r, int64_t x)
{
    if (r->has_lo && (r->lo_open ? x <= r->lo : x < r->lo))
        return false;
    return !r->has_hi || (r->hi_open ? x < r->hi : x <= r->hi);
}

static bool but_one(const struct but *b, size_t i, const struct value *v)
{
    if (b->kind == BUT_NUMBERS)
        return v->type == V_NUMBER && v->num_ok && v->num == b->nums[i];
    if (v->type != V_STRING)
        return false;
    if (b->kind == BUT_STRINGS)
        return text_eq(v->s, b->strs[i]);
    return b->kind == BUT_PREFIX ? text_prefix(v->s, b->strs[i]) : text_suffix(v->s, b->strs[i]);
}

/* Is v one of the values an anything-but excludes? */
static bool but_listed(const struct but *b, const struct value *v)
{
    for (size_t i = 0; i < b->n; i++)
        if (but_one(b, i, v))
            return true;
    return false;
}

static bool string_match(const struct cond *c, struct text t)
{
    switch (c->kind) {
    case C_STRING:
        return text_eq(t, c->u.s);
    case C_PREFIX:
        return text_prefix(t, c->u.s);
    case C_SUFFIX:
        return text_suffix(t, c->u.s);
    case C_NOCASE:
        return text_nocase(t, c->u.s);
    case C_WILDCARD:
        return text_wildcard(t, &c->u.wild);
    case C_CIDR:
        return cidr_contains(&c->u.cidr, t);
    default:
        return false;
    }
}

static bool cond_match(const struct cond *c, const struct value *v)
{
    switch (c->kind) {
    case C_NUMBER:
        return v->type == V_NUMBER && v->num_ok && v->num == c->u.num;
    case C_NUMERIC:
        return v->type == V_NUMBER && v->num_ok && in_range(&c->u.range, v->num);
    case C_TRUE:
        return v->type == V_TRUE;
    case C_FALSE:
        return v->type == V_FALSE;
    case C_NULL:
        return v->type == V_NULL;
    case C_BUT:
        return v->type != V_NULL && !but_listed(&c->u.but, v);
    default:
        return v->type == V_STRING && string_match(c, v->s);
    }
}

/* What a leaf's conditions need while its values are walked once. */
struct leaf_pass {
    const struct leaf *leaf;
    bool array_but; /* the values are a String.Array: anything-but judges them as a whole */
};

/* Conditions decided value by value; the others (exists, anything-but on a String.Array) are
 * decided on all of a key's values together. */
static bool per_value(const struct cond *c, bool array_but)
{
    return c->kind != C_EXISTS && !(array_but && c->kind == C_BUT);
}

static bool value_matches(const struct value *v, const void *arg)
{
    const struct leaf_pass *pass = arg;
    for (size_t i = 0; i < pass->leaf->nconds; i++) {
        const struct cond *c = &pass->leaf->conds[i];
        if (per_value(c, pass->array_but) && cond_match(c, v))
            return true;
    }
    return false;
}

static bool value_listed(const struct value *v, const void *arg)
{
    return but_listed(&((const struct cond *)arg)->u.but, v);
}

/* A value in SNS's sense: not null, not an empty string. */
static bool value_present(const struct value *v, const void *arg)
{
    (void)arg;
    return v->type != V_NULL && !(v->type == V_STRING && v->s.n == 0);
}

static bool whole_holds(const struct cond *c, const struct values *vs)
{
    bool present = values_each(vs, value_present, NULL);
    if (c->kind == C_EXISTS)
        return c->u.exists ? present : !present && vs->src->attrs_present;
    /* SNS: anything-but matches a String.Array when none of its elements is excluded */
    return present && !values_each(vs, value_listed, c);
}

/* Any condition holds: the whole-set ones first, then one walk over the values for the rest.
 * An array attribute whose value is not a JSON array matches no condition at all, not even
 * exists:false (SNS filters such a message out as carrying an invalid attribute). */
static bool leaf_matches(const struct leaf *l, const struct source *s)
{
    struct values vs = {.src = s, .leaf = l};
    if (!s->body)
        vs.attr = attr_lookup(s->root, l->path);
    if ((vs.attr.kind == A_STRING_ARRAY || vs.attr.kind == A_NUMBER_ARRAY) &&
        !array_valid(vs.attr.v))
        return false;
    struct leaf_pass pass = {l, vs.attr.kind == A_STRING_ARRAY};
    bool walk = false;
    for (size_t i = 0; i < l->nconds; i++) {
        if (per_value(&l->conds[i], pass.array_but))
            walk = true;
        else if (whole_holds(&l->conds[i], &vs))
            return true;
    }
    return walk && values_each(&vs, value_matches, &pass);
}

static bool node_matches(const struct node *n, const struct source *s)
{
    for (size_t i = 0; i < n->nleaves; i++)
        if (!leaf_matches(&n->leaves[i], s))
            return false;
    for (size_t i = 0; i < n->nors; i++) {
        const struct or_group *g = &n->ors[i];
        size_t b = 0;
        while (b < g->n && !node_matches(&g->branches[b], s))
            b++;
        if (b == g->n)
            return false;
    }
    return true;
}

bool filter_match_attributes(const struct filter_policy *p, json_t *attributes)
{
    if (!p)
        return false;
    if (p->empty)
        return true;
    json_t *attrs = json_is_object(attributes) ? attributes : NULL;
    struct source s = {attrs, false, p->has_absent && any_attribute(attrs)};
    return node_matches(&p->root, &s);
}

bool filter_match_body(const struct filter_policy *p, json_t *body)
{
    if (!p)
        return false;
    if (p->empty)
        return true;
    if (!json_is_object(body))
        return false;
    struct source s = {body, true, true};
    return node_matches(&p->root, &s);
}
