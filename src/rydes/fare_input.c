/* Decoding and validation of POST /fares (the reference workshop's body: customerId, fareId,
 * fareAmount, cc, expiryDate, cvv); see include/rydes/fare_input.h. Pure C over jansson values;
 * fuzzed by tests/fuzz/fuzz_wildrydes.c. */
#include "rydes/fare_input.h"

#include "rydes/rides.h"
#include "rydes/saga.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool fare_id_valid(const char *id)
{
    return *id && strlen(id) <= SAGA_FARE_ID_MAX &&
           strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
               strlen(id);
}

/* The card number's digits (spaces and dashes allowed between them): 12..19 of them. */
static bool card_digits(const char *cc, char *last4)
{
    char digits[24];
    size_t n = 0;
    for (const char *p = cc; *p; p++) {
        if (isdigit((unsigned char)*p) && n < sizeof digits - 1)
            digits[n++] = *p;
        else if (*p != ' ' && *p != '-')
            return false;
    }
    if (n < 12 || n > 19)
        return false;
    memcpy(last4, digits + n - 4, 4);
    last4[4] = '\0';
    return true;
}

/* "MM/YY" or "MM/YYYY", not in the past. */
static bool expiry_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if ((n != 5 && n != 7) || s[2] != '/' || strspn(s, "0123456789") != 2 ||
        strspn(s + 3, "0123456789") != n - 3)
        return false;
    int mm = (s[0] - '0') * 10 + (s[1] - '0'), yy = atoi(s + 3);
    if (mm < 1 || mm > 12 || (n == 7 && yy < 2000))
        return false;
    if (yy < 100)
        yy += 2000;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return yy > tm.tm_year + 1900 || (yy == tm.tm_year + 1900 && mm >= tm.tm_mon + 1);
}

void fare_input(json_t *body, struct fare_input *in, struct field_errors *fe)
{
    static const char *const known[] = {"customerId", "fareId", "fareAmount", "cc",
                                        "expiryDate", "cvv",    NULL};
    memset(in, 0, sizeof *in);
    validate_known_fields(body, known, fe);
    in->customer = validate_string(body, "customerId", true, 1, RIDES_TEXT_MAX, fe);
    in->fare_id = validate_string(body, "fareId", true, 1, SAGA_FARE_ID_MAX, fe);
    if (in->fare_id && !fare_id_valid(in->fare_id))
        field_errors_add(fe, "fareId", "must be 1 to 64 of A-Z a-z 0-9 _ -");
    else if (in->fare_id && strncmp(in->fare_id, SAGA_RIDE_PREFIX, strlen(SAGA_RIDE_PREFIX)) == 0)
        field_errors_add(fe, "fareId",
                         "must not start with \"" SAGA_RIDE_PREFIX
                         "\": those are the fares of rides");
    json_t *amount = json_object_get(body, "fareAmount");
    if (!amount || !validate_cents(amount, 1e6, true, &in->amount))
        field_errors_add(fe, "fareAmount", "must be an amount such as \"$20.00\" or 20.5");
    const char *cc = validate_string(body, "cc", true, 12, 23, fe);
    if (cc && !card_digits(cc, in->last4))
        field_errors_add(fe, "cc", "must be a card number of 12 to 19 digits");
    const char *expiry = validate_string(body, "expiryDate", true, 1, 7, fe);
    if (expiry && !expiry_valid(expiry))
        field_errors_add(fe, "expiryDate", "must be MM/YY or MM/YYYY and not in the past");
    const char *cvv = validate_string(body, "cvv", true, 3, 4, fe);
    if (cvv && strspn(cvv, "0123456789") != strlen(cvv))
        field_errors_add(fe, "cvv", "must be 3 or 4 digits");
}
