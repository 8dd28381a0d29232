/* Schema migrations: the files sql/NNN_name.sql, embedded into the binary at build time, applied
 * in order, each in its own transaction and recorded in table rydes_migrations. A session-level
 * advisory lock serialises concurrent migrators, so any number of processes may start at once. */
#ifndef RYDES_MIGRATE_H
#define RYDES_MIGRATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct migration {
    int version;
    const char *name;
    const char *sql;
};

/* Generated from sql/ at build time (build/migrations.c). */
extern const struct migration rydes_migrations[];
extern const size_t rydes_migrations_count;

/* Applies every pending migration on pg. *applied receives how many were applied now. Returns
 * false with err filled when one failed (it and everything after it is not applied). */
bool migrate_apply(PGconn *pg, int *applied, char *err, size_t errlen);

/* Reads how many of the embedded migrations the database has. Returns false when the database
 * could not be asked; a database without the migrations table has 0. */
bool migrate_status(PGconn *pg, int *applied);

/* Grants role data access to everything in the current schema: SELECT, INSERT, UPDATE and
 * DELETE on the tables and views (only SELECT on rydes_migrations), the sequences and the
 * functions, nothing that changes the schema. Idempotent; run it after migrate_apply, as the
 * owner. Returns false with err filled when PostgreSQL refused (no such role, not the owner). */
bool migrate_grant(PGconn *pg, const char *role, char *err, size_t errlen);

#endif
