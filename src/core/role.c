/* Token role names; see include/rydes/role.h. */
#include "rydes/role.h"

#include <string.h>

static const char *const names[] = {"none", "app", "service", "admin"};

const char *role_name(enum role r)
{
    return (r >= ROLE_NONE && r <= ROLE_ADMIN) ? names[r] : "none";
}

bool role_parse(const char *s, enum role *out)
{
    for (int r = ROLE_APP; r <= ROLE_ADMIN; r++) {
        if (strcmp(s, names[r]) == 0) {
            *out = (enum role)r;
            return true;
        }
    }
    return false;
}
