/* Reading result columns into C values; see include/rydes/db.h. */
#include "rydes/db.h"

#include "rydes/clock.h"

#include <ctype.h>
#include <string.h>

void db_read_ts(PGresult *r, int row, int col, char *out)
{
    out[0] = '\0';
    if (PQgetisnull(r, row, col))
        return;
    const char *t = PQgetvalue(r, row, col);
    if (strlen(t) < 19)
        return;
    /* "YYYY-MM-DD hh:mm:ss[.ffffff]+00" -> "YYYY-MM-DDThh:mm:ss.mmmZ" */
    memcpy(out, t, 10);
    out[10] = 'T';
    memcpy(out + 11, t + 11, 8);
    memcpy(out + 19, ".000Z", 6);
    if (t[19] == '.')
        for (int i = 0; i < 3 && isdigit((unsigned char)t[20 + i]); i++)
            out[20 + i] = t[20 + i];
}
