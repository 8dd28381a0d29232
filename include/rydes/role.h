/* Token roles, ordered: each role may do everything the roles below it may. */
#ifndef RYDES_ROLE_H
#define RYDES_ROLE_H

#include <stdbool.h>

enum role {
    ROLE_NONE = 0, /* open route: no token needed */
    ROLE_APP = 1,
    ROLE_SERVICE = 2,
    ROLE_ADMIN = 3,
};

/* "app", "service", "admin" ("none" for ROLE_NONE). Static storage. */
const char *role_name(enum role r);
/* Parses one of the three token roles; false for anything else, including "none". */
bool role_parse(const char *s, enum role *out);

#endif
