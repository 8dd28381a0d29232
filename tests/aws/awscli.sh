#!/usr/bin/env bash
# Debian's awscli (2.9, whose botocore speaks SQS's query protocol) against a running Rydes:
# every SQS operation of the issue through `aws sqs`, FIFO, a dead-letter redrive and a long
# poll. Env: RYDES_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (an admin token's key).
# Prints "N passed, N failed" and exits non-zero on a failure.
set -uo pipefail
AWS=${AWS_CLI:-/usr/bin/aws}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_PAGER= AWS_EC2_METADATA_DISABLED=true
RUN=cli$(date +%s)$$
pass=0 fail=0
sqs() { "$AWS" --endpoint-url "$RYDES_URL" --output json sqs "$@"; }
check() { # check NAME COMMAND...: the command must succeed
    local name=$1; shift
    if out=$("$@" 2>&1); then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name: $out" >&2; fi
}
expect_error() { # expect_error NAME CODE COMMAND...: the command must fail with CODE
    local name=$1 code=$2; shift 2
    if out=$("$@" 2>&1); then fail=$((fail + 1)); echo "FAIL $name: succeeded" >&2
    elif grep -q "$code" <<<"$out"; then pass=$((pass + 1))
    else fail=$((fail + 1)); echo "FAIL $name: $out" >&2; fi
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }

Q=$(sqs create-queue --queue-name "$RUN-std" --attributes VisibilityTimeout=40 | field '["QueueUrl"]')
check create-queue test "$Q" = "$RYDES_URL/000000000000/$RUN-std"
check get-queue-url test "$(sqs get-queue-url --queue-name "$RUN-std" | field '["QueueUrl"]')" = "$Q"
check list-queues bash -c "sqs() { \"$AWS\" --endpoint-url \"$RYDES_URL\" sqs \"\$@\"; }; sqs list-queues --queue-name-prefix $RUN- | grep -q '$RUN-std'"
check set-queue-attributes sqs set-queue-attributes --queue-url "$Q" --attributes DelaySeconds=0,ReceiveMessageWaitTimeSeconds=1
check get-queue-attributes test "$(sqs get-queue-attributes --queue-url "$Q" --attribute-names All | field '["Attributes"]["ReceiveMessageWaitTimeSeconds"]')" = 1
expect_error bad-attribute InvalidAttributeName sqs get-queue-attributes --queue-url "$Q" --attribute-names Nope

M=$(sqs send-message --queue-url "$Q" --message-body 'hello & <cli>' \
    --message-attributes '{"fare":{"DataType":"Number","StringValue":"61.5"},"img":{"DataType":"Binary","BinaryValue":"AAEC/w=="}}')
check send-message test "$(field '["MD5OfMessageBody"]' <<<"$M")" = "$(printf 'hello & <cli>' | md5sum | cut -c1-32)"
R=$(sqs receive-message --queue-url "$Q" --max-number-of-messages 10 --attribute-names All --message-attribute-names All)
check receive-message test "$(field '["Messages"][0]["Body"]' <<<"$R")" = 'hello & <cli>'
check receive-attributes test "$(field '["Messages"][0]["MessageAttributes"]["fare"]["StringValue"]' <<<"$R")" = 61.5
H=$(field '["Messages"][0]["ReceiptHandle"]' <<<"$R")
check change-message-visibility sqs change-message-visibility --queue-url "$Q" --receipt-handle "$H" --visibility-timeout 0
R=$(sqs receive-message --queue-url "$Q")
H=$(field '["Messages"][0]["ReceiptHandle"]' <<<"$R")
check delete-message sqs delete-message --queue-url "$Q" --receipt-handle "$H"
expect_error delete-bad-receipt ReceiptHandleIsInvalid sqs delete-message --queue-url "$Q" --receipt-handle bogus

B=$(sqs send-message-batch --queue-url "$Q" --entries Id=a,MessageBody=one Id=b,MessageBody=two)
check send-message-batch test "$(field '["Successful"].__len__()' <<<"$B")" = 2
R=$(sqs receive-message --queue-url "$Q" --max-number-of-messages 10 --wait-time-seconds 1)
ENTRIES=$(python3 -c 'import json,sys; print(" ".join("Id=e%d,ReceiptHandle=%s" % (i, m["ReceiptHandle"]) for i, m in enumerate(json.load(sys.stdin)["Messages"])))' <<<"$R")
VIS=$(python3 -c 'import json,sys; print(" ".join("Id=e%d,ReceiptHandle=%s,VisibilityTimeout=5" % (i, m["ReceiptHandle"]) for i, m in enumerate(json.load(sys.stdin)["Messages"])))' <<<"$R")
check change-message-visibility-batch test "$(sqs change-message-visibility-batch --queue-url "$Q" --entries $VIS | field '["Successful"].__len__()')" = 2
check delete-message-batch test "$(sqs delete-message-batch --queue-url "$Q" --entries $ENTRIES | field '["Successful"].__len__()')" = 2
expect_error too-many TooManyEntriesInBatchRequest sqs send-message-batch --queue-url "$Q" --entries $(for i in $(seq 11); do printf 'Id=m%d,MessageBody=x ' "$i"; done)
expect_error not-distinct BatchEntryIdsNotDistinct sqs send-message-batch --queue-url "$Q" --entries Id=a,MessageBody=x Id=a,MessageBody=y

# long polling: a receive waiting 10 s returns as soon as a message arrives
( sleep 1; sqs send-message --queue-url "$Q" --message-body late >/dev/null ) &
t0=$(date +%s)
R=$(sqs receive-message --queue-url "$Q" --wait-time-seconds 10)
wait
check long-poll test "$(field '["Messages"][0]["Body"]' <<<"$R")" = late -a $(( $(date +%s) - t0 )) -lt 6

F=$(sqs create-queue --queue-name "$RUN-jobs.fifo" --attributes FifoQueue=true,ContentBasedDeduplication=true | field '["QueueUrl"]')
for b in f1 f2; do sqs send-message --queue-url "$F" --message-body $b --message-group-id g >/dev/null; done
D=$(sqs send-message --queue-url "$F" --message-body f1 --message-group-id g | field '["MessageId"]')
R=$(sqs receive-message --queue-url "$F" --attribute-names All)
check fifo-order test "$(field '["Messages"][0]["Body"]' <<<"$R")" = f1 -a "$(field '["Messages"][0]["MessageId"]' <<<"$R")" = "$D"
expect_error fifo-group MissingParameter sqs send-message --queue-url "$F" --message-body x

DLQ=$(sqs create-queue --queue-name "$RUN-dlq" | field '["QueueUrl"]')
SRC=$(sqs create-queue --queue-name "$RUN-src" | field '["QueueUrl"]')
ARN=$(sqs get-queue-attributes --queue-url "$DLQ" --attribute-names QueueArn | field '["Attributes"]["QueueArn"]')
check redrive-policy sqs set-queue-attributes --queue-url "$SRC" --attributes "{\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"$ARN\\\",\\\"maxReceiveCount\\\":\\\"1\\\"}\"}"
check dead-letter-sources test "$(sqs list-dead-letter-source-queues --queue-url "$DLQ" | field '["queueUrls"][0]')" = "$SRC"
sqs send-message --queue-url "$SRC" --message-body poison >/dev/null
sqs receive-message --queue-url "$SRC" --visibility-timeout 0 >/dev/null
sqs receive-message --queue-url "$SRC" >/dev/null
check dlq-redrive test "$(sqs receive-message --queue-url "$DLQ" --wait-time-seconds 2 | field '["Messages"][0]["Body"]')" = poison

check tag-queue sqs tag-queue --queue-url "$Q" --tags team=rides,env=test
check untag-queue sqs untag-queue --queue-url "$Q" --tag-keys env
check list-queue-tags test "$(sqs list-queue-tags --queue-url "$Q" | field '["Tags"]')" = "{'team': 'rides'}"
check purge-queue sqs purge-queue --queue-url "$Q"
check delete-queue sqs delete-queue --queue-url "$Q"
expect_error deleted NonExistentQueue sqs get-queue-url --queue-name "$RUN-std"
expect_error bad-secret SignatureDoesNotMatch env AWS_SECRET_ACCESS_KEY=wrongwrongwrongwrongwrongwrongwrongwrong "$AWS" --endpoint-url "$RYDES_URL" sqs list-queues

echo "awscli: $pass passed, $fail failed"
[ "$fail" = 0 ]
