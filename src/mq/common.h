/* Private helpers shared by the files of src/mq: result classification and row readers. */
#ifndef RYDES_MQ_COMMON_H
#define RYDES_MQ_COMMON_H

#include "rydes/mq.h"

/* Copies a text column into a fixed buffer. */
void mq_copy(char *dst, size_t n, PGresult *r, int row, int col);
/* Reads a message row (laid out as MQ_MESSAGE_COLUMNS) of queue queue_id. */
void mq_read_message(PGresult *r, int row, int queue_id, struct mq_message *m);
/* Runs st ($1: the name to list after, $2: a row limit, $3: also, when st takes it) and
 * returns up to limit names, each malloc'd, in a malloc'd array (the caller frees both); *more
 * when further names follow. */
enum mq_status mq_list_names(struct db_conn *c, struct db_stmt *st, const char *after,
                             const char *also, int limit, char ***names, int *count, bool *more);
/* Frees what one message owns (not the message itself). */
void mq_messages_clear(struct mq_message *m);

#define MQ_MESSAGE_NCOLUMNS 12

/* The columns mq_read_message expects, from a row source named m. Timestamps travel in
 * PostgreSQL's own text form and are reformatted in C (cheaper than to_char in every row). */
// clang-format off
/* The body of message m: its own, or, for a topic delivery of a large body, the payload stored
 * once. */
#define MQ_BODY_SQL                                                                            \
    "CASE WHEN m.payload_id IS NULL THEN m.body "                                              \
    "ELSE (SELECT p.body FROM payloads p WHERE p.id = m.payload_id) END"
#define MQ_MESSAGE_COLUMNS                                                                     \
    "m.id, m.message_id, m.receipt, " MQ_BODY_SQL ", m.body_json, m.attributes, "              \
    "m.receive_count, "                                                                        \
    "m.sent_at, m.first_received_at, m.visible_at, mq_state(m.visible_at, m.receive_count), "  \
    "m.group_id"
// clang-format on

#endif
