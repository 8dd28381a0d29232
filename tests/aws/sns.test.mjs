// SNS through the real @aws-sdk/client-sns (always the query protocol) against a running Rydes
// (./dev test's aws_test; the server must run the push worker): every operation, REST <-> SNS,
// filtered fan-out into SQS queues read back with @aws-sdk/client-sqs, raw delivery on and off,
// a FIFO topic into a FIFO queue, PublishBatch, an http subscription POSTing to a server of this
// test, the errors and the roles.
// Env: RYDES_URL, RYDES_TOKEN (the admin bearer token), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
// (its access key), RYDES_APP_KEY_ID/RYDES_APP_SECRET (an app token's key).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it, after } from 'node:test';
import * as snsSdk from '@aws-sdk/client-sns';
import * as sqsSdk from '@aws-sdk/client-sqs';

const URL_ = process.env.RYDES_URL;
const TOKEN = process.env.RYDES_TOKEN;
const RUN = `s${Date.now().toString(36)}`;
const name = (n) => `${RUN}-${n}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function options(keyId = process.env.AWS_ACCESS_KEY_ID, secret = process.env.AWS_SECRET_ACCESS_KEY) {
  return { endpoint: URL_, region: 'us-east-1', maxAttempts: 1, credentials: { accessKeyId: keyId, secretAccessKey: secret } };
}
const sns = new snsSdk.SNSClient(options());
const sqs = new sqsSdk.SQSClient(options());
const app = new snsSdk.SNSClient(options(process.env.RYDES_APP_KEY_ID, process.env.RYDES_APP_SECRET));
const call = (op, input, client = sns) => client.send(new snsSdk[op + 'Command'](input));
const q = (op, input) => sqs.send(new sqsSdk[op + 'Command'](input));

async function rest(method, path, body) {
  const res = await fetch(URL_ + path, {
    method, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: res.status === 204 ? null : await res.json() };
}

async function rejects(promise, code, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e.name === code || e.Code === code || e.name === `${code}Exception`,
      `expected ${code}, got ${e.name} (${e.Code}): ${e.message}`);
    if (status) assert.equal(e.$metadata.httpStatusCode, status);
    return e;
  }
  assert.fail(`expected ${code}, got success`);
}

async function queue(n, attrs = {}) {
  const { QueueUrl } = await q('CreateQueue', { QueueName: n, Attributes: attrs });
  return { url: QueueUrl, arn: `arn:aws:sqs:us-east-1:000000000000:${n}` };
}

// Every message of a queue until it stays empty (deleting them).
async function drain(url, want) {
  const got = [];
  for (let i = 0; i < 10 && got.length < want; i++) {
    const r = await q('ReceiveMessage', { QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'], AttributeNames: ['All'] });
    for (const m of r.Messages ?? []) {
      got.push(m);
      await q('DeleteMessage', { QueueUrl: url, ReceiptHandle: m.ReceiptHandle });
    }
  }
  const extra = await q('ReceiveMessage', { QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 });
  assert.equal((extra.Messages ?? []).length, 0, 'no more messages than expected');
  return got;
}

describe('SNS over the query protocol', () => {
  it('creates, lists, reads and deletes topics; REST sees them and SNS sees REST\'s', async () => {
    const n = name('topic');
    const { TopicArn } = await call('CreateTopic', { Name: n });
    assert.equal(TopicArn, `arn:aws:sns:us-east-1:000000000000:${n}`);
    assert.equal((await call('CreateTopic', { Name: n })).TopicArn, TopicArn); // idempotent
    const { Topics } = await call('ListTopics', {});
    assert.ok(Topics.some((t) => t.TopicArn === TopicArn));
    const { Attributes } = await call('GetTopicAttributes', { TopicArn });
    assert.equal(Attributes.TopicArn, TopicArn);
    assert.equal(Attributes.SubscriptionsConfirmed, '0');
    assert.equal((await rest('GET', `/topics/${n}`)).status, 200);
    assert.equal((await rest('PUT', `/topics/${name('rest')}`)).status, 201);
    const viaSns = await call('GetTopicAttributes', { TopicArn: `arn:aws:sns:us-east-1:000000000000:${name('rest')}` });
    assert.equal(viaSns.Attributes.FifoTopic, 'false');
    await call('DeleteTopic', { TopicArn });
    await call('DeleteTopic', { TopicArn }); // deleting a missing topic is no error
    assert.equal((await rest('GET', `/topics/${n}`)).status, 404);
    await rejects(call('GetTopicAttributes', { TopicArn }), 'NotFound', 404);
    await rejects(call('CreateTopic', { Name: 'no spaces' }), 'InvalidParameter', 400);
    await rejects(call('CreateTopic', { Name: name('f.fifo') }), 'InvalidParameter', 400);
    await rejects(call('CreateTopic', { Name: n, Attributes: { DisplayName: 'x' } }), 'InvalidParameter', 400);
    await rejects(call('GetTopicAttributes', { TopicArn: 'not-an-arn' }), 'InvalidParameter', 400);
    await rejects(call('Publish', { TopicArn, Message: 'x' }), 'NotFound', 404);
  });

  it('applies the token roles', async () => {
    await rejects(call('ListTopics', {}, app), 'AuthorizationError', 403);
    await rejects(call('CreateTopic', { Name: name('app') }, app), 'AuthorizationError', 403);
  });

  it('fans out with filter policies, envelopes and raw delivery, and manages subscriptions', async () => {
    const { TopicArn } = await call('CreateTopic', { Name: name('fan') });
    const all = await queue(name('all')), big = await queue(name('big'));
    const s1 = await call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: all.arn });
    assert.equal(s1.SubscriptionArn, `${TopicArn}:sqs-${name('all')}`);
    assert.equal((await call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: all.arn })).SubscriptionArn, s1.SubscriptionArn);
    const s2 = await call('Subscribe', {
      TopicArn, Protocol: 'sqs', Endpoint: big.arn, ReturnSubscriptionArn: true,
      Attributes: { FilterPolicy: JSON.stringify({ size: ['big'], fare: [{ numeric: ['>=', 50] }] }), RawMessageDelivery: 'true' },
    });
    await rejects(call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: big.arn, Attributes: { RawMessageDelivery: 'false' } }), 'InvalidParameter');
    await rejects(call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: big.arn, Attributes: { FilterPolicy: '{"size": [{"numeric": ["<"]}]}' } }), 'InvalidParameter');
    await rejects(call('Subscribe', { TopicArn, Protocol: 'email', Endpoint: 'a@b.example' }), 'InvalidParameter');
    await rejects(call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: 'arn:aws:sqs:us-east-1:000000000000:nope-none' }), 'InvalidParameter');

    const attrs = (await call('GetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn })).Attributes;
    assert.equal(attrs.RawMessageDelivery, 'true');
    assert.deepEqual(JSON.parse(attrs.FilterPolicy), { size: ['big'], fare: [{ numeric: ['>=', 50] }] });
    assert.equal(attrs.FilterPolicyScope, 'MessageAttributes');
    assert.equal(attrs.Endpoint, big.arn);
    assert.equal(attrs.TopicArn, TopicArn);
    const byTopic = await call('ListSubscriptionsByTopic', { TopicArn });
    assert.deepEqual(byTopic.Subscriptions.map((s) => s.SubscriptionArn).sort(), [s1.SubscriptionArn, s2.SubscriptionArn].sort());
    assert.ok(byTopic.Subscriptions.every((s) => s.Protocol === 'sqs' && s.TopicArn === TopicArn));
    const everywhere = await call('ListSubscriptions', {});
    assert.ok(everywhere.Subscriptions.some((s) => s.SubscriptionArn === s2.SubscriptionArn));
    const restSubs = await rest('GET', `/topics/${name('fan')}/subscriptions`);
    assert.equal(restSubs.json.subscriptions.find((s) => s.queue === name('big')).raw_delivery, true);

    const str = (v) => ({ DataType: 'String', StringValue: v });
    const num = (v) => ({ DataType: 'Number', StringValue: v });
    const p1 = await call('Publish', { TopicArn, Message: 'a big one', Subject: 'Ride', MessageAttributes: { size: str('big'), fare: num('61.5') } });
    await call('Publish', { TopicArn, Message: 'a small one', MessageAttributes: { size: str('small'), fare: num('70') } });
    await call('Publish', { TopicArn, Message: 'a cheap big one', MessageAttributes: { size: str('big'), fare: num('10') } });

    const gotAll = await drain(all.url, 3);
    assert.equal(gotAll.length, 3);
    const env = gotAll.map((m) => JSON.parse(m.Body)).find((e) => e.MessageId === p1.MessageId);
    assert.equal(env.Type, 'Notification');
    assert.equal(env.TopicArn, TopicArn);
    assert.equal(env.Subject, 'Ride');
    assert.equal(env.Message, 'a big one');
    assert.match(env.Timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(env.MessageAttributes.size, { Type: 'String', Value: 'big' });
    assert.deepEqual(env.MessageAttributes.fare, { Type: 'Number', Value: '61.5' });
    const gotBig = await drain(big.url, 1);
    assert.deepEqual(gotBig.map((m) => m.Body), ['a big one']); // raw: the bare message
    assert.equal(gotBig[0].MessageAttributes.size.StringValue, 'big');

    // raw delivery off, a policy on the body, then no policy at all
    await call('SetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn, AttributeName: 'RawMessageDelivery', AttributeValue: 'false' });
    await rejects(call('SetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn, AttributeName: 'FilterPolicy', AttributeValue: '{"a": "not a list"}' }), 'InvalidParameter');
    await call('SetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn, AttributeName: 'FilterPolicyScope', AttributeValue: 'MessageBody' });
    await call('SetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn, AttributeName: 'FilterPolicy', AttributeValue: '{"ride": {"fare": [{"numeric": [">", 100]}]}}' });
    await rejects(call('SetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn, AttributeName: 'Nope', AttributeValue: 'x' }), 'InvalidParameter');
    await call('Publish', { TopicArn, Message: JSON.stringify({ ride: { fare: 150 } }) });
    await call('Publish', { TopicArn, Message: JSON.stringify({ ride: { fare: 15 } }) });
    const gotBody = await drain(big.url, 1);
    assert.equal(gotBody.length, 1);
    const env2 = JSON.parse(gotBody[0].Body);
    assert.equal(env2.Type, 'Notification');
    assert.deepEqual(JSON.parse(env2.Message), { ride: { fare: 150 } });
    await drain(all.url, 2);

    await call('Unsubscribe', { SubscriptionArn: s2.SubscriptionArn });
    await rejects(call('GetSubscriptionAttributes', { SubscriptionArn: s2.SubscriptionArn }), 'NotFound', 404);
    await rejects(call('Unsubscribe', { SubscriptionArn: 'arn:aws:sns:us-east-1:000000000000:nope' }), 'InvalidParameter');
    assert.equal((await call('ListSubscriptionsByTopic', { TopicArn })).Subscriptions.length, 1);
  });

  it('delivers a FIFO topic into a FIFO queue in order, deduplicated', async () => {
    const { TopicArn } = await call('CreateTopic', { Name: name('rides.fifo'), Attributes: { FifoTopic: 'true', ContentBasedDeduplication: 'true' } });
    assert.equal((await call('GetTopicAttributes', { TopicArn })).Attributes.ContentBasedDeduplication, 'true');
    const fq = await queue(name('rides.fifo'), { FifoQueue: 'true' });
    await call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: fq.arn, Attributes: { RawMessageDelivery: 'true' } });
    const ids = [];
    for (const body of ['one', 'two', 'three'])
      ids.push((await call('Publish', { TopicArn, Message: body, MessageGroupId: 'g1' })).MessageId);
    const dup = await call('Publish', { TopicArn, Message: 'one', MessageGroupId: 'g1' });
    assert.equal(dup.MessageId, ids[0]); // content-based deduplication: the original id
    await call('Publish', { TopicArn, Message: 'four', MessageGroupId: 'g1', MessageDeduplicationId: 'd4' });
    await rejects(call('Publish', { TopicArn, Message: 'x' }), 'InvalidParameter');
    const got = await drain(fq.url, 4);
    assert.deepEqual(got.map((m) => m.Body), ['one', 'two', 'three', 'four']);
    assert.equal(got[0].Attributes.MessageGroupId, 'g1');
    await rejects(call('Subscribe', { TopicArn, Protocol: 'https', Endpoint: 'https://example.com/hook' }), 'InvalidParameter');
  });

  it('publishes batches', async () => {
    const { TopicArn } = await call('CreateTopic', { Name: name('batch') });
    const bq = await queue(name('batchq'));
    await call('Subscribe', { TopicArn, Protocol: 'sqs', Endpoint: bq.arn, Attributes: { RawMessageDelivery: 'true' } });
    const r = await call('PublishBatch', {
      TopicArn, PublishBatchRequestEntries: [
        { Id: 'a', Message: 'first', MessageAttributes: { k: { DataType: 'String', StringValue: 'v' } } },
        { Id: 'b', Message: '' },
        { Id: 'c', Message: 'third', Subject: 'S' },
      ],
    });
    assert.deepEqual(r.Successful.map((s) => s.Id), ['a', 'c']);
    assert.equal(r.Failed.length, 1);
    assert.equal(r.Failed[0].Id, 'b');
    assert.equal(r.Failed[0].Code, 'InvalidParameter');
    assert.equal(r.Failed[0].SenderFault, true);
    const got = await drain(bq.url, 2);
    assert.deepEqual(got.map((m) => m.Body).sort(), ['first', 'third']);
    await rejects(call('PublishBatch', { TopicArn, PublishBatchRequestEntries: [] }), 'EmptyBatchRequest');
    await rejects(call('PublishBatch', { TopicArn, PublishBatchRequestEntries: [{ Id: 'x', Message: '1' }, { Id: 'x', Message: '2' }] }), 'BatchEntryIdsNotDistinct');
    await rejects(call('PublishBatch', { TopicArn, PublishBatchRequestEntries: Array.from({ length: 11 }, (_, i) => ({ Id: `i${i}`, Message: 'm' })) }), 'TooManyEntriesInBatchRequest');
  });

  describe('http subscriptions', () => {
    const posts = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => { posts.push({ headers: req.headers, body }); res.end('ok'); });
    });
    after(() => server.close());

    it('POSTs the envelope to the endpoint', async () => {
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const endpoint = `http://127.0.0.1:${server.address().port}/hook`;
      const { TopicArn } = await call('CreateTopic', { Name: name('web') });
      const { SubscriptionArn } = await call('Subscribe', { TopicArn, Protocol: 'http', Endpoint: endpoint });
      assert.match(SubscriptionArn, new RegExp(`^${TopicArn}:url-[0-9a-f]{24}$`));
      const a = (await call('GetSubscriptionAttributes', { SubscriptionArn })).Attributes;
      assert.equal(a.Protocol, 'http');
      assert.equal(a.Endpoint, endpoint);
      await call('SetSubscriptionAttributes', { SubscriptionArn, AttributeName: 'DeliveryPolicy', AttributeValue: JSON.stringify({ healthyRetryPolicy: { numRetries: 3, minDelayTarget: 1, maxDelayTarget: 5 } }) });
      await rejects(call('Subscribe', { TopicArn, Protocol: 'http', Endpoint: 'https://wrong.example/' }), 'InvalidParameter');
      const { MessageId } = await call('Publish', { TopicArn, Message: 'to the web', Subject: 'Hi' });
      for (let i = 0; i < 100 && posts.length === 0; i++) await sleep(100);
      assert.equal(posts.length, 1);
      const env = JSON.parse(posts[0].body);
      assert.equal(env.MessageId, MessageId);
      assert.equal(env.TopicArn, TopicArn);
      assert.equal(env.Message, 'to the web');
      assert.equal(env.Subject, 'Hi');
      assert.equal(posts[0].headers['x-rydes-message-id'], MessageId);
      await call('Unsubscribe', { SubscriptionArn });
    });
  });
});
