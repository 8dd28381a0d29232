/* Private helpers shared by the files of src/mq: result classification and row readers. */
#ifndef RYDES_MQ_COMMON_H
#define RYDES_MQ_COMMON_H

#include "rydes/mq.h"

/* Clears res and maps a failed statement to MQ_UNAVAILABLE or MQ_ERROR. */
enum mq_status mq_failed(struct db_conn *c, PGresult *res);
/* Copies a text column into a fixed buffer. */
void mq_copy(char *dst, size_t n, PGresult *r, int row, int col);
/* Reads a message row laid out as MQ_MESSAGE_COLUMNS. */
void mq_read_message(PGresult *r, int row, struct mq_message *m);

/* The columns mq_read_message expects, from a row source named m. */
#define MQ_MESSAGE_COLUMNS                                                                \
    "m.id, m.message_id, m.receipt, m.body, m.body_json, m.attributes, m.receive_count, " \
    "rfc3339(m.sent_at), rfc3339(m.first_received_at), rfc3339(m.visible_at), "           \
    "mq_state(m.visible_at, m.receive_count), m.group_id"

#endif
