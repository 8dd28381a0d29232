/* Reading result columns into C values; see include/rydes/db.h. */
#include "rydes/db.h"

#include "rydes/clock.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void db_read_ts(PGresult *r, int row, int col, char *out)
{
    out[0] = '\0';
    if (PQgetisnull(r, row, col))
        return;
    const char *t = PQgetvalue(r, row, col);
    if (strlen(t) < 19)
        return;
    char ms[4] = "000";
    if (t[19] == '.')
        for (int i = 0; i < 3 && isdigit((unsigned char)t[20 + i]); i++)
            ms[i] = t[20 + i];
    snprintf(out, CLOCK_RFC3339_LEN, "%.10sT%.8s.%sZ", t, t + 11, ms);
}

