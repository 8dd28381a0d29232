/* libFuzzer harness for SNS filter policies (src/mq/filter.c). The input is split at its first
 * NUL byte (or, without one, in the middle) into a policy JSON text and a message JSON text; the
 * policy is compiled for both scopes and, when it compiles, the message is matched as attributes
 * and as a body. Everything is freed, so LeakSanitizer checks the compiler's error paths too.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude
 *        tests/fuzz/fuzz_filter.c src/mq/filter.c src/core/mem.c $(pkg-config --cflags --libs
 *        jansson) -o /tmp/fuzz_filter */
#include "rydes/filter.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_scope(json_t *policy, json_t *message, enum filter_scope scope)
{
    char err[256];
    struct filter_policy *p = filter_compile(policy, scope, err, sizeof err);
    if (!p) {
        /* a refusal always explains itself */
        if (err[0] == '\0')
            __builtin_trap();
        return;
    }
    if (filter_combinations(p) < 1 || filter_combinations(p) > FILTER_MAX_COMBINATIONS)
        __builtin_trap();
    /* matching is pure: the same answer twice */
    bool a = filter_match_attributes(p, message), b = filter_match_body(p, message);
    if (a != filter_match_attributes(p, message) || b != filter_match_body(p, message))
        __builtin_trap();
    filter_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t split = nul ? (size_t)(nul - data) : size / 2;
    size_t rest = nul ? split + 1 : split;
    json_error_t e;
    json_t *policy = json_loadb((const char *)data, split, JSON_DECODE_ANY, &e);
    json_t *message = json_loadb((const char *)data + rest, size - rest, JSON_DECODE_ANY, &e);
    if (policy) {
        run_scope(policy, message, FILTER_SCOPE_ATTRIBUTES);
        run_scope(policy, message, FILTER_SCOPE_BODY);
    }
    json_decref(policy);
    json_decref(message);
    return 0;
}
