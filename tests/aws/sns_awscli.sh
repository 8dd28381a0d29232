#!/usr/bin/env bash
# Debian's awscli against a running Rydes: a few `aws sns` operations (SNS always speaks the
# query protocol): topics, a filtered raw subscription into a queue, publishing, the errors.
# Env: RYDES_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (an admin token's key).
# Prints "N passed, N failed" and exits non-zero on a failure.
set -uo pipefail
AWS=${AWS_CLI:-/usr/bin/aws}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} AWS_PAGER= AWS_EC2_METADATA_DISABLED=true
RUN=clisns$(date +%s)$$
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

sns() { "$AWS" --endpoint-url "$RYDES_URL" --output json sns "$@"; }
T=$(sns create-topic --name "$RUN-topic" | field '["TopicArn"]')
check create-topic test "$T" = "arn:aws:sns:$AWS_DEFAULT_REGION:000000000000:$RUN-topic"
check list-topics bash -c "$(declare -f sns); AWS=$AWS RYDES_URL=$RYDES_URL; sns list-topics | grep -q '$RUN-topic'"
check get-topic-attributes test "$(sns get-topic-attributes --topic-arn "$T" | field '["Attributes"]["TopicArn"]')" = "$T"
SQ=$(sqs create-queue --queue-name "$RUN-sns" | field '["QueueUrl"]')
S=$(sns subscribe --topic-arn "$T" --protocol sqs --notification-endpoint "arn:aws:sqs:$AWS_DEFAULT_REGION:000000000000:$RUN-sns" \
    --attributes '{"RawMessageDelivery":"true","FilterPolicy":"{\"kind\":[\"ride\"]}"}' | field '["SubscriptionArn"]')
check subscribe test "$S" = "$T:sqs-$RUN-sns"
check list-subscriptions-by-topic test "$(sns list-subscriptions-by-topic --topic-arn "$T" | field '["Subscriptions"][0]["SubscriptionArn"]')" = "$S"
check get-subscription-attributes test "$(sns get-subscription-attributes --subscription-arn "$S" | field '["Attributes"]["RawMessageDelivery"]')" = true
check publish-filtered-out sns publish --topic-arn "$T" --message skipped --message-attributes '{"kind":{"DataType":"String","StringValue":"other"}}'
check publish sns publish --topic-arn "$T" --message 'hello sns' --message-attributes '{"kind":{"DataType":"String","StringValue":"ride"}}'
check sns-delivered test "$(sqs receive-message --queue-url "$SQ" --max-number-of-messages 10 --wait-time-seconds 2 | field '["Messages"][0]["Body"]')" = 'hello sns'
expect_error bad-filter-policy InvalidParameter sns set-subscription-attributes --subscription-arn "$S" --attribute-name FilterPolicy --attribute-value '{"kind":"ride"}'
check unsubscribe sns unsubscribe --subscription-arn "$S"
check delete-topic sns delete-topic --topic-arn "$T"
expect_error topic-deleted NotFound sns get-topic-attributes --topic-arn "$T"

echo "awscli sns: $pass passed, $fail failed"
[ "$fail" = 0 ]
