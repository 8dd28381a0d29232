/* filterbench: how long matching one message against 200 compiled SNS filter policies takes,
 * for ./dev bench. The policies mix every operator family (exact strings and numbers,
 * anything-but, prefix, suffix, equals-ignore-case, wildcard, numeric ranges, exists, cidr,
 * $or) over the attributes a Wild Rydes ride event carries; the messages vary so that some
 * policies match and some fail early or late. Prints one line of JSON:
 * {"policies":200,"messages":N,"ns_per_match":..,"us_per_message":..,"matched":..}. */
#include "rydes/filter.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLICIES 200
#define MESSAGES 64

static const char *const templates[] = {
    "{\"city\": [\"Berlin\"]}",
    "{\"city\": [\"Berlin\", \"Paris\", \"Rome\"], \"fare\": [{\"numeric\": [\">=\", @]}]}",
    "{\"fare\": [{\"numeric\": [\">\", @, \"<=\", 500]}]}",
    "{\"city\": [{\"anything-but\": [\"Madrid\", \"Lisbon\"]}], \"vip\": [{\"exists\": true}]}",
    "{\"unicorn\": [{\"prefix\": \"uni-@\"}]}",
    "{\"unicorn\": [{\"suffix\": \"-@\"}], \"city\": [{\"equals-ignore-case\": \"berlin\"}]}",
    "{\"source\": [{\"cidr\": \"10.@.0.0/16\"}]}",
    "{\"route\": [{\"wildcard\": \"*-to-Frank*\"}], \"fare\": [{\"numeric\": [\"<\", @]}]}",
    "{\"$or\": [{\"city\": [\"Oslo\"]}, {\"fare\": [{\"numeric\": [\"=\", @]}]}]}",
    "{\"tags\": [\"airport\", \"night\"], \"vip\": [{\"exists\": false}], \"fare\": [@]}",
};

static const char *const cities[] = {"Berlin", "Paris", "Madrid", "Oslo"};

static json_t *message(int i)
{
    char unicorn[32], source[32], fare[32];
    snprintf(unicorn, sizeof unicorn, "uni-%d-%d", i % 20, i % 7);
    snprintf(source, sizeof source, "10.%d.%d.%d", i % 40, i % 250, i % 200);
    snprintf(fare, sizeof fare, "%d.5", (i * 37) % 600);
    json_t *attrs = json_pack(
        "{s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}}", "city",
        "type", "String", "value", cities[i % 4], "fare", "type", "Number", "value", fare,
        "unicorn", "type", "String", "value", unicorn, "source", "type", "String", "value", source,
        "route", "type", "String", "value", i % 2 ? "Berlin-to-Frankfurt" : "Paris-to-Lyon", "tags",
        "type", "String.Array", "value", i % 3 ? "[\"airport\",\"day\"]" : "[\"city\"]");
    if (i % 5 == 0)
        json_object_set_new(attrs, "vip", json_pack("{s:s,s:s}", "type", "String", "value", "yes"));
    return attrs;
}

/* The template with its one "@" replaced by n, into out. */
static void instantiate(const char *tmpl, int n, char *out, size_t len)
{
    const char *at = strchr(tmpl, '@');
    if (at)
        snprintf(out, len, "%.*s%d%s", (int)(at - tmpl), tmpl, n, at + 1);
    else
        snprintf(out, len, "%s", tmpl);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 2.0;
    struct filter_policy *policies[POLICIES];
    size_t ntemplates = sizeof templates / sizeof *templates;
    for (int i = 0; i < POLICIES; i++) {
        char text[512], err[256];
        instantiate(templates[(size_t)i % ntemplates], i % 25 * 10, text, sizeof text);
        json_t *j = json_loads(text, 0, NULL);
        policies[i] = j ? filter_compile(j, FILTER_SCOPE_ATTRIBUTES, err, sizeof err) : NULL;
        json_decref(j);
        if (!policies[i]) {
            fprintf(stderr, "policy %d does not compile: %s: %s\n", i, text, err);
            return 1;
        }
    }
    json_t *msgs[MESSAGES];
    for (int i = 0; i < MESSAGES; i++)
        msgs[i] = message(i);
    long matches = 0, matched = 0;
    double t0 = seconds(), elapsed = 0;
    while (elapsed < budget) {
        for (int m = 0; m < MESSAGES; m++)
            for (int p = 0; p < POLICIES; p++)
                matched += filter_match_attributes(policies[p], msgs[m]);
        matches += (long)MESSAGES * POLICIES;
        elapsed = seconds() - t0;
    }
    printf("{\"policies\":%d,\"messages\":%ld,\"ns_per_match\":%.1f,\"us_per_message\":%.2f,"
           "\"matched_share\":%.3f}\n",
           POLICIES, matches / POLICIES, elapsed * 1e9 / (double)matches,
           elapsed * 1e6 / ((double)matches / POLICIES), (double)matched / (double)matches);
    for (int i = 0; i < POLICIES; i++)
        filter_free(policies[i]);
    for (int i = 0; i < MESSAGES; i++)
        json_decref(msgs[i]);
    return 0;
}
