/* The SNS query protocol's entry (Version 2010-03-31): the hook dispatch.c calls for requests
 * signed for service "sns". SNS is not served yet: every action is answered with SNS's
 * InvalidAction error (never a fake success) until this file implements the operations over
 * the engine's topics (rydes/topics.h) on the shared core (rydes/aws.h, rydes/wire.h). */
#include "rydes/aws.h"

enum handler_result aws_sns_query(struct aws_call *call)
{
    return aws_fail(call, WIRE_INVALID_ACTION,
                    "The action %s is not valid for this endpoint: SNS is not supported yet.",
                    call->op);
}
