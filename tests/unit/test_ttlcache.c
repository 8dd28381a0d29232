/* Unit tests of the TTL cache (rydes/ttlcache.h): hits, misses, expiry, removal, slot
 * collisions, and that nothing of a value stays in memory once it is removed, cleared, replaced
 * or expired (the AWS key cache holds secret access keys). The cache's source is included so
 * the tests can look at its slots. */
#include "../../src/core/ttlcache.c"

#include "unit.h"

#include <stdio.h>
#include <time.h>

struct secret {
    char text[40];
};

static struct secret secret_of(const char *s)
{
    struct secret v;
    memset(&v, 0, sizeof v);
    snprintf(v.text, sizeof v.text, "%s", s);
    return v;
}

/* Are all n bytes at p zero? */
static bool zero(const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i])
            return false;
    return true;
}

/* Is every slot's key and value wiped? */
static bool all_wiped(const struct ttlcache *c)
{
    for (size_t i = 0; i < c->nslots; i++)
        if (c->slots[i].keylen || !zero(c->slots[i].key, sizeof c->slots[i].key))
            return false;
    return zero(c->values, c->nslots * c->value_size);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A put after a miss, as the callers make it. */
static void put(struct ttlcache *c, const char *key, size_t n, const struct secret *v)
{
    struct secret ignored;
    uint64_t gen = 0;
    ttlcache_get(c, key, n, &ignored, &gen);
    ttlcache_put(c, key, n, v, gen);
}

START_TEST(a_put_value_is_read_back_until_removed)
{
    struct ttlcache *c = ttlcache_create(8, sizeof(struct secret), 60 * 1000000LL);
    struct secret v = secret_of("wJalrXUtnFEMI/K7MDENG"), out;
    put(c, "AKIA1", 5, &v);
    ck_assert(ttlcache_get(c, "AKIA1", 5, &out, NULL));
    ck_assert_str_eq(out.text, v.text);
    ck_assert(!ttlcache_get(c, "AKIA2", 5, &out, NULL));
    ck_assert(!ttlcache_get(c, "", 0, &out, NULL));
    ttlcache_remove(c, "AKIA1", 5);
    ck_assert(!ttlcache_get(c, "AKIA1", 5, &out, NULL));
    ck_assert(all_wiped(c));
    ttlcache_free(c);
}
END_TEST

START_TEST(clear_wipes_every_slot)
{
    struct ttlcache *c = ttlcache_create(4, sizeof(struct secret), 60 * 1000000LL);
    char key[16];
    for (int i = 0; i < 16; i++) { /* more keys than slots: some collide and replace others */
        snprintf(key, sizeof key, "key-%d", i);
        struct secret v = secret_of(key);
        put(c, key, strlen(key), &v);
    }
    ck_assert(!all_wiped(c));
    ttlcache_clear(c);
    ck_assert(all_wiped(c));
    ttlcache_free(c);
}
END_TEST

START_TEST(an_expired_value_is_a_miss_and_is_wiped)
{
    struct ttlcache *c = ttlcache_create(8, sizeof(struct secret), 1000); /* 1 ms */
    struct secret v = secret_of("short-lived"), out;
    put(c, "k", 1, &v);
    sleep_ms(5);
    ck_assert(!ttlcache_get(c, "k", 1, &out, NULL));
    ck_assert(all_wiped(c));
    ttlcache_free(c);
}
END_TEST

START_TEST(a_colliding_key_replaces_the_other_without_a_tail)
{
    struct ttlcache *c = ttlcache_create(1, sizeof(struct secret), 60 * 1000000LL);
    struct secret a = secret_of("a-long-secret-value-of-the-first-key"), b = secret_of("b"), out;
    put(c, "a-rather-long-key", 17, &a);
    put(c, "b", 1, &b); /* one slot: b replaces a */
    ck_assert(!ttlcache_get(c, "a-rather-long-key", 17, &out, NULL));
    ck_assert(ttlcache_get(c, "b", 1, &out, NULL));
    ck_assert_str_eq(out.text, "b");
    ck_assert(zero(c->slots[0].key + 1, sizeof c->slots[0].key - 1));
    ck_assert(zero(c->values + 2, c->value_size - 2));
    ttlcache_free(c);
}
END_TEST

/* A value read from the database after a miss is not cached when the cache was cleared (or an
 * entry removed) meanwhile: it may be what the clearing revoked. */
START_TEST(a_put_after_an_invalidation_is_dropped)
{
    struct ttlcache *c = ttlcache_create(8, sizeof(struct secret), 60 * 1000000LL);
    struct secret v = secret_of("revoked"), out;
    uint64_t gen;
    ck_assert(!ttlcache_get(c, "t", 1, &out, &gen));
    ttlcache_clear(c); /* the token is deleted while its lookup runs */
    ttlcache_put(c, "t", 1, &v, gen);
    ck_assert(!ttlcache_get(c, "t", 1, &out, &gen));
    ttlcache_remove(c, "other", 5);
    ttlcache_put(c, "t", 1, &v, gen);
    ck_assert(!ttlcache_get(c, "t", 1, &out, &gen));
    ttlcache_put(c, "t", 1, &v, gen); /* a lookup that began after both */
    ck_assert(ttlcache_get(c, "t", 1, &out, NULL));
    ttlcache_free(c);
}
END_TEST

/* forget removes a key, wiped, and leaves lookups in progress valid: their puts land. */
START_TEST(forget_removes_without_invalidating)
{
    struct ttlcache *c = ttlcache_create(8, sizeof(struct secret), 60 * 1000000LL);
    struct secret v = secret_of("seen"), out;
    put(c, "t", 1, &v);
    uint64_t gen;
    ck_assert(!ttlcache_get(c, "u", 1, &out, &gen)); /* a lookup of u begins */
    ttlcache_forget(c, "t", 1);
    ck_assert(!ttlcache_get(c, "t", 1, &out, NULL));
    ck_assert(all_wiped(c));
    ttlcache_put(c, "u", 1, &v, gen);
    ck_assert(ttlcache_get(c, "u", 1, &out, NULL));
    ttlcache_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ttlcache");
    TCase *tc = tcase_create("cache");
    tcase_add_test(tc, a_put_value_is_read_back_until_removed);
    tcase_add_test(tc, clear_wipes_every_slot);
    tcase_add_test(tc, an_expired_value_is_a_miss_and_is_wiped);
    tcase_add_test(tc, a_colliding_key_replaces_the_other_without_a_tail);
    tcase_add_test(tc, a_put_after_an_invalidation_is_dropped);
    tcase_add_test(tc, forget_removes_without_invalidating);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
