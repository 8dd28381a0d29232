// SQS through real AWS SDK clients against a running Rydes (./dev test's aws_test): the current
// @aws-sdk/client-sqs speaks AWS JSON 1.0, client-sqs-query (3.441.0) the query protocol. Every
// operation, FIFO, dead-letter redrive, long polling, the errors, roles and REST <-> SQS.
// Env: RYDES_URL, RYDES_TOKEN (the admin bearer token), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
// (its access key), RYDES_APP_KEY_ID/RYDES_APP_SECRET (an app token's key).
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, it, before } from 'node:test';
import * as jsonSdk from '@aws-sdk/client-sqs';
import * as querySdk from 'client-sqs-query';

const URL_ = process.env.RYDES_URL;
const TOKEN = process.env.RYDES_TOKEN;
const RUN = `t${Date.now().toString(36)}`;
const md5 = (s) => createHash('md5').update(s).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function client(sdk, keyId = process.env.AWS_ACCESS_KEY_ID, secret = process.env.AWS_SECRET_ACCESS_KEY) {
  return new sdk.SQSClient({
    endpoint: URL_, region: 'us-east-1', maxAttempts: 1,
    credentials: { accessKeyId: keyId, secretAccessKey: secret },
  });
}

async function rest(method, path, body) {
  const res = await fetch(URL_ + path, {
    method, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: res.status === 204 ? null : await res.json() };
}

async function rejects(promise, names) {
  try {
    await promise;
  } catch (e) {
    assert.ok([names].flat().includes(e.name) || [names].flat().includes(e.Code),
      `expected ${names}, got ${e.name} (${e.Code}): ${e.message}`);
    return e;
  }
  assert.fail(`expected ${names}, got success`);
}

for (const [label, sdk] of [['json', jsonSdk], ['query', querySdk]]) {
  describe(`SQS over ${label}`, () => {
    const sqs = client(sdk);
    const send = (cmd, input) => sqs.send(new sdk[cmd + 'Command'](input));
    const name = (n) => `${RUN}-${label}-${n}`;
    const urlOf = async (n) => (await send('GetQueueUrl', { QueueName: n })).QueueUrl;

    it('creates, finds, lists, reads and changes queues', async () => {
      const q = name('std');
      const { QueueUrl } = await send('CreateQueue', { QueueName: q, Attributes: { VisibilityTimeout: '45', DelaySeconds: '0' } });
      assert.equal(QueueUrl, `${URL_}/000000000000/${q}`);
      assert.equal((await send('CreateQueue', { QueueName: q, Attributes: { VisibilityTimeout: '45' } })).QueueUrl, QueueUrl);
      await rejects(send('CreateQueue', { QueueName: q, Attributes: { VisibilityTimeout: '46' } }), ['QueueNameExists', 'QueueAlreadyExists']);
      assert.equal(await urlOf(q), QueueUrl);
      const listed = await send('ListQueues', { QueueNamePrefix: `${RUN}-${label}-` });
      assert.ok(listed.QueueUrls.includes(QueueUrl));
      const paged = await send('ListQueues', { QueueNamePrefix: `${RUN}-${label}-`, MaxResults: 1 });
      assert.equal(paged.QueueUrls.length, 1);
      let attrs = (await send('GetQueueAttributes', { QueueUrl, AttributeNames: ['All'] })).Attributes;
      assert.equal(attrs.VisibilityTimeout, '45');
      assert.equal(attrs.QueueArn, `arn:aws:sqs:us-east-1:000000000000:${q}`);
      assert.equal(attrs.ApproximateNumberOfMessages, '0');
      await send('SetQueueAttributes', { QueueUrl, Attributes: { VisibilityTimeout: '60', MessageRetentionPeriod: '3600' } });
      attrs = (await send('GetQueueAttributes', { QueueUrl, AttributeNames: ['VisibilityTimeout', 'MessageRetentionPeriod'] })).Attributes;
      assert.deepEqual(attrs, { VisibilityTimeout: '60', MessageRetentionPeriod: '3600' });
      await rejects(send('GetQueueAttributes', { QueueUrl, AttributeNames: ['NoSuchAttribute'] }), 'InvalidAttributeName');
      await rejects(send('SetQueueAttributes', { QueueUrl, Attributes: { VisibilityTimeout: '99999' } }), 'InvalidAttributeValue');
    });

    it('sends, receives, changes visibility and deletes with attributes and MD5s', async () => {
      const { QueueUrl } = await send('CreateQueue', { QueueName: name('msg') });
      const body = 'hello <Rydes> & "SQS" \u00fc\u20ac\r\n';
      const MessageAttributes = {
        fare: { DataType: 'Number', StringValue: '61.5' },
        customer: { DataType: 'String', StringValue: 'cust-42' },
        blob: { DataType: 'Binary', BinaryValue: new Uint8Array([0, 1, 2, 255]) },
      };
      const sent = await send('SendMessage', { QueueUrl, MessageBody: body, MessageAttributes });
      assert.equal(sent.MD5OfMessageBody, md5(body));
      assert.equal(sent.MD5OfMessageAttributes, '42b5a19ea78fd71e0765a910cd1d8d3d'); // computed independently (Python)
      const got = await send('ReceiveMessage', { QueueUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], AttributeNames: ['All'], VisibilityTimeout: 30 });
      assert.equal(got.Messages.length, 1);
      const m = got.Messages[0];
      assert.equal(m.Body, body);
      assert.equal(m.MessageId, sent.MessageId);
      assert.equal(m.MD5OfBody, md5(body));
      assert.equal(m.MD5OfMessageAttributes, sent.MD5OfMessageAttributes);
      assert.equal(m.MessageAttributes.fare.StringValue, '61.5');
      assert.deepEqual([...m.MessageAttributes.blob.BinaryValue], [0, 1, 2, 255]);
      assert.equal(m.Attributes.ApproximateReceiveCount, '1');
      assert.ok(Number(m.Attributes.SentTimestamp) > 1e12);
      const some = await send('ReceiveMessage', { QueueUrl, WaitTimeSeconds: 0 });
      assert.equal(some.Messages?.length ?? 0, 0);
      await send('ChangeMessageVisibility', { QueueUrl, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 });
      const again = await send('ReceiveMessage', { QueueUrl, MessageAttributeNames: ['cust.*', 'customer'] });
      assert.deepEqual(Object.keys(again.Messages[0].MessageAttributes), ['customer']);
      await rejects(send('DeleteMessage', { QueueUrl, ReceiptHandle: m.ReceiptHandle }), 'ReceiptHandleIsInvalid');
      await send('DeleteMessage', { QueueUrl, ReceiptHandle: again.Messages[0].ReceiptHandle });
      await rejects(send('DeleteMessage', { QueueUrl, ReceiptHandle: 'not-a-receipt' }), 'ReceiptHandleIsInvalid');
      await rejects(send('SendMessage', { QueueUrl, MessageBody: 'x', DelaySeconds: 901 }), 'InvalidParameterValue');
      await rejects(send('SendMessage', { QueueUrl, MessageBody: 'bad \u0001' }), 'InvalidMessageContents');
    });

    it('batches: send, receive, change visibility, delete, and the batch errors', async () => {
      const { QueueUrl } = await send('CreateQueue', { QueueName: name('batch') });
      const r = await send('SendMessageBatch', { QueueUrl, Entries: [
        { Id: 'a', MessageBody: 'one' }, { Id: 'b', MessageBody: 'two', DelaySeconds: 0 },
        { Id: 'c', MessageBody: 'three', MessageAttributes: { k: { DataType: 'String', StringValue: 'v' } } },
        { Id: 'bad', MessageBody: 'x', MessageAttributes: { k: { DataType: 'Number', StringValue: 'NaN!' } } }] });
      assert.deepEqual(r.Successful.map((e) => e.Id).sort(), ['a', 'b', 'c']);
      assert.equal(r.Successful.find((e) => e.Id === 'b').MD5OfMessageBody, md5('two'));
      assert.equal(r.Failed.length, 1);
      assert.equal(r.Failed[0].Id, 'bad');
      assert.equal(r.Failed[0].SenderFault, true);
      const msgs = [];
      for (let i = 0; i < 5 && msgs.length < 3; i++)
        msgs.push(...((await send('ReceiveMessage', { QueueUrl, MaxNumberOfMessages: 10 })).Messages ?? []));
      assert.equal(msgs.length, 3);
      const vis = await send('ChangeMessageVisibilityBatch', { QueueUrl, Entries: [
        { Id: 'x', ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 120 },
        { Id: 'y', ReceiptHandle: 'nope', VisibilityTimeout: 10 }] });
      assert.deepEqual(vis.Successful.map((e) => e.Id), ['x']);
      assert.equal(vis.Failed[0].Code, 'ReceiptHandleIsInvalid');
      const del = await send('DeleteMessageBatch', { QueueUrl, Entries: msgs.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle })) });
      assert.equal(del.Successful.length, 3);
      await rejects(send('SendMessageBatch', { QueueUrl, Entries: [] }), ['EmptyBatchRequest', 'AWS.SimpleQueueService.EmptyBatchRequest']);
      await rejects(send('SendMessageBatch', { QueueUrl, Entries: Array.from({ length: 11 }, (_, i) => ({ Id: `e${i}`, MessageBody: 'x' })) }),
        ['TooManyEntriesInBatchRequest', 'AWS.SimpleQueueService.TooManyEntriesInBatchRequest']);
      await rejects(send('SendMessageBatch', { QueueUrl, Entries: [{ Id: 'same', MessageBody: 'x' }, { Id: 'same', MessageBody: 'y' }] }),
        ['BatchEntryIdsNotDistinct', 'AWS.SimpleQueueService.BatchEntryIdsNotDistinct']);
      await rejects(send('DeleteMessageBatch', { QueueUrl, Entries: [{ Id: 'no spaces', ReceiptHandle: 'r' }] }),
        ['InvalidBatchEntryId', 'AWS.SimpleQueueService.InvalidBatchEntryId']);
    });

    it('FIFO: group order, deduplication, sequence numbers', async () => {
      const { QueueUrl } = await send('CreateQueue', { QueueName: name('orders.fifo'), Attributes: { FifoQueue: 'true', ContentBasedDeduplication: 'true' } });
      const first = await send('SendMessage', { QueueUrl, MessageBody: 'm1', MessageGroupId: 'g1' });
      assert.match(first.SequenceNumber, /^\d+$/);
      const dup = await send('SendMessage', { QueueUrl, MessageBody: 'm1', MessageGroupId: 'g1' });
      assert.equal(dup.MessageId, first.MessageId);
      await send('SendMessage', { QueueUrl, MessageBody: 'm2', MessageGroupId: 'g1', MessageDeduplicationId: 'd2' });
      await send('SendMessageBatch', { QueueUrl, Entries: [{ Id: 'a', MessageBody: 'm3', MessageGroupId: 'g1' }] });
      await rejects(send('SendMessage', { QueueUrl, MessageBody: 'x' }), 'MissingParameter');
      const bodies = [];
      for (let i = 0; i < 3; i++) {
        const r = await send('ReceiveMessage', { QueueUrl, MaxNumberOfMessages: 1, AttributeNames: ['MessageGroupId', 'SequenceNumber'] });
        const m = r.Messages[0];
        assert.equal(m.Attributes.MessageGroupId, 'g1');
        assert.match(m.Attributes.SequenceNumber, /^\d+$/);
        bodies.push(m.Body);
        await send('DeleteMessage', { QueueUrl, ReceiptHandle: m.ReceiptHandle });
      }
      assert.deepEqual(bodies, ['m1', 'm2', 'm3']);
      const attrs = (await send('GetQueueAttributes', { QueueUrl, AttributeNames: ['FifoQueue', 'ContentBasedDeduplication'] })).Attributes;
      assert.deepEqual(attrs, { FifoQueue: 'true', ContentBasedDeduplication: 'true' });
    });

    it('dead-letter queues: RedrivePolicy moves a message past maxReceiveCount', async () => {
      const dlq = await send('CreateQueue', { QueueName: name('dlq') });
      const dlqArn = (await send('GetQueueAttributes', { QueueUrl: dlq.QueueUrl, AttributeNames: ['QueueArn'] })).Attributes.QueueArn;
      const src = await send('CreateQueue', { QueueName: name('src'), Attributes: {
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }) } });
      const policy = JSON.parse((await send('GetQueueAttributes', { QueueUrl: src.QueueUrl, AttributeNames: ['RedrivePolicy'] })).Attributes.RedrivePolicy);
      assert.deepEqual(policy, { deadLetterTargetArn: dlqArn, maxReceiveCount: 2 });
      const sources = await send('ListDeadLetterSourceQueues', { QueueUrl: dlq.QueueUrl });
      assert.deepEqual(sources.queueUrls, [src.QueueUrl]);
      const sent = await send('SendMessage', { QueueUrl: src.QueueUrl, MessageBody: 'poison' });
      for (let i = 0; i < 2; i++) {
        const r = await send('ReceiveMessage', { QueueUrl: src.QueueUrl, VisibilityTimeout: 0 });
        assert.equal(r.Messages[0].Body, 'poison');
      }
      const third = await send('ReceiveMessage', { QueueUrl: src.QueueUrl });
      assert.equal(third.Messages?.length ?? 0, 0);
      const dead = await send('ReceiveMessage', { QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 2 });
      assert.equal(dead.Messages[0].MessageId, sent.MessageId);
      await rejects(send('CreateQueue', { QueueName: name('src2'), Attributes: { RedrivePolicy: '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:nope","maxReceiveCount":1}' } }), 'InvalidParameterValue');
    });

    it('long polling waits for a message, and returns empty at its deadline', async () => {
      const { QueueUrl } = await send('CreateQueue', { QueueName: name('poll') });
      let t0 = Date.now();
      const empty = await send('ReceiveMessage', { QueueUrl, WaitTimeSeconds: 1 });
      assert.equal(empty.Messages?.length ?? 0, 0);
      assert.ok(Date.now() - t0 >= 900, 'waited about a second');
      t0 = Date.now();
      const waiting = send('ReceiveMessage', { QueueUrl, WaitTimeSeconds: 10 });
      await sleep(500);
      await send('SendMessage', { QueueUrl, MessageBody: 'wake up' });
      const r = await waiting;
      assert.equal(r.Messages[0].Body, 'wake up');
      assert.ok(Date.now() - t0 < 5000, 'answered as soon as the message came');
    });

    it('tags, purge and delete', async () => {
      const { QueueUrl } = await send('CreateQueue', { QueueName: name('tags'), tags: { team: 'rides' }, ...(label === 'query' ? {} : {}) });
      await send('TagQueue', { QueueUrl, Tags: { env: 'test', team: 'wild' } });
      assert.deepEqual((await send('ListQueueTags', { QueueUrl })).Tags, { env: 'test', team: 'wild' });
      await send('UntagQueue', { QueueUrl, TagKeys: ['env'] });
      assert.deepEqual((await send('ListQueueTags', { QueueUrl })).Tags, { team: 'wild' });
      await send('SendMessage', { QueueUrl, MessageBody: 'x' });
      await send('PurgeQueue', { QueueUrl });
      const attrs = (await send('GetQueueAttributes', { QueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] })).Attributes;
      assert.equal(attrs.ApproximateNumberOfMessages, '0');
      await send('DeleteQueue', { QueueUrl });
      await rejects(urlOf(name('tags')), ['QueueDoesNotExist', 'AWS.SimpleQueueService.NonExistentQueue']);
      await rejects(send('SendMessage', { QueueUrl, MessageBody: 'x' }), ['QueueDoesNotExist', 'AWS.SimpleQueueService.NonExistentQueue']);
    });

    it('authentication and roles', async () => {
      const bad = client(sdk, process.env.AWS_ACCESS_KEY_ID, 'x'.repeat(40));
      await rejects(bad.send(new sdk.ListQueuesCommand({})), 'SignatureDoesNotMatch');
      const unknown = client(sdk, 'AKIDAAAAAAAAAAAAAAAA', 'x'.repeat(40));
      await rejects(unknown.send(new sdk.ListQueuesCommand({})), 'InvalidClientTokenId');
      const app = client(sdk, process.env.RYDES_APP_KEY_ID, process.env.RYDES_APP_SECRET);
      await rejects(app.send(new sdk.CreateQueueCommand({ QueueName: name('nope') })), 'AccessDenied');
      await rejects(app.send(new sdk.ListQueuesCommand({})), 'AccessDenied');
      const { QueueUrl } = await send('CreateQueue', { QueueName: name('app') });
      await rejects(app.send(new sdk.SendMessageCommand({ QueueUrl, MessageBody: 'x' })), 'AccessDenied');
    });

    it('a queue made through REST is the queue of SQS, and the other way round', async () => {
      const q = name('rest');
      assert.equal((await rest('PUT', `/queues/${q}`, { visibility_timeout: 77 })).status, 201);
      const QueueUrl = await urlOf(q);
      const attrs = (await send('GetQueueAttributes', { QueueUrl, AttributeNames: ['VisibilityTimeout'] })).Attributes;
      assert.equal(attrs.VisibilityTimeout, '77');
      await rest('POST', `/queues/${q}/messages`, { body: { ride: 42 }, attributes: { fare: { type: 'Number', value: '61.5' } } });
      const m = (await send('ReceiveMessage', { QueueUrl, MessageAttributeNames: ['All'] })).Messages[0];
      assert.deepEqual(JSON.parse(m.Body), { ride: 42 });
      assert.equal(m.MessageAttributes.fare.StringValue, '61.5');
      const q2 = name('sqs');
      await send('CreateQueue', { QueueName: q2, Attributes: { DelaySeconds: '5' } });
      const got = await rest('GET', `/queues/${q2}`);
      assert.equal(got.status, 200);
      assert.equal(got.json.attributes.delay_seconds, 5);
      await send('SendMessage', { QueueUrl: await urlOf(q2), MessageBody: 'via sqs', DelaySeconds: 0 });
      const rr = await rest('POST', `/queues/${q2}/messages:receive`, { wait_seconds: 2 });
      assert.equal(rr.json.messages[0].body, 'via sqs');
    });
  });
}
