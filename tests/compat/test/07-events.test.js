'use strict';
// Event subscriptions (PROTOCOL.md §2 subscribe/unsubscribe, §4 onEvent).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let raw;
let sessionId;
let pipelineId;
let a;
let b;

before(async () => {
  server = await h.startServer();
  raw = await h.RawClient.open(server.url);
  const p = await raw.call('create', { type: 'MediaPipeline' });
  pipelineId = p.result.value;
  sessionId = p.result.sessionId;
  const create = async () =>
    (await raw.call('create', { type: 'PassThrough', constructorParams: { mediaPipeline: pipelineId }, properties: {}, sessionId }))
      .result.value;
  a = await create();
  b = await create();
});

after(async () => {
  if (raw) await raw.close();
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };

function eventsOf(type) {
  return raw.notifications.filter((n) => n.params && n.params.value && n.params.value.type === type);
}

test('subscribe twice: two subscription ids, one notification per event', T, async () => {
  const s1 = await raw.call('subscribe', { object: a, type: 'ElementConnected', sessionId });
  const s2 = await raw.call('subscribe', { object: a, type: 'ElementConnected', sessionId });
  assert.ok(s1.result && s2.result, JSON.stringify([s1, s2]));
  assert.match(s1.result.value, h.UUID_RE);
  assert.match(s2.result.value, h.UUID_RE);
  assert.notEqual(s1.result.value, s2.result.value);
  assert.equal(s1.result.sessionId, sessionId);

  raw.notifications.length = 0;
  await raw.call('invoke', { object: a, operation: 'connect', operationParams: { sink: b, mediaType: 'VIDEO' }, sessionId });
  await h.waitFor(() => eventsOf('ElementConnected').length >= 1, 5000, 'ElementConnected');
  await h.sleep(500);
  const evs = eventsOf('ElementConnected');
  assert.equal(evs.length, 1, `expected exactly one notification, got ${evs.length}`);
  const n = evs[0];
  assert.equal(n.jsonrpc, '2.0');
  assert.equal(n.method, 'onEvent');
  assert.equal(n.id, undefined);
  assert.equal(n.params.value.object, a);
  assert.equal(n.params.value.type, 'ElementConnected');
  const data = n.params.value.data;
  assert.equal(data.source, a);
  assert.equal(data.sink, b);
  assert.equal(data.mediaType, 'VIDEO');
  assert.equal(data.type, 'ElementConnected');
  assert.match(data.timestampMillis, /^\d+$/);
  assert.ok(Math.abs(Number(data.timestampMillis) - Date.now()) < 60000, data.timestampMillis);
  assert.deepEqual(data.tags, []);

  // Unsubscribe both: no more notifications.
  const u1 = await raw.call('unsubscribe', { object: a, subscription: s1.result.value, sessionId });
  assert.ok(u1.result, JSON.stringify(u1));
  assert.equal(u1.result.sessionId, sessionId);
  // One subscription left: still notified.
  raw.notifications.length = 0;
  await raw.call('invoke', { object: a, operation: 'connect', operationParams: { sink: b, mediaType: 'AUDIO' }, sessionId });
  await h.waitFor(() => eventsOf('ElementConnected').length >= 1, 5000, 'ElementConnected with one subscription left');
  await raw.call('unsubscribe', { object: a, subscription: s2.result.value, sessionId });
  raw.notifications.length = 0;
  await raw.call('invoke', { object: a, operation: 'connect', operationParams: { sink: b, mediaType: 'DATA' }, sessionId });
  await h.sleep(700);
  assert.equal(eventsOf('ElementConnected').length, 0, 'notification after unsubscribe');
});

test('unsubscribe of an unknown subscription is a silent success', T, async () => {
  const u = await raw.call('unsubscribe', { object: a, subscription: 'does-not-exist', sessionId });
  assert.ok(u.result, JSON.stringify(u));
});

test('tags are sent in events when sendTagsInEvents is true', T, async () => {
  await raw.call('invoke', { object: a, operation: 'addTag', operationParams: { key: 'k', value: 'v' }, sessionId });
  await raw.call('invoke', { object: a, operation: 'setSendTagsInEvents', operationParams: { sendTagsInEvents: true }, sessionId });
  const s = await raw.call('subscribe', { object: a, type: 'ElementDisconnected', sessionId });
  assert.ok(s.result, JSON.stringify(s));
  raw.notifications.length = 0;
  await raw.call('invoke', { object: a, operation: 'disconnect', operationParams: { sink: b, mediaType: 'VIDEO' }, sessionId });
  await h.waitFor(() => eventsOf('ElementDisconnected').length >= 1, 5000, 'ElementDisconnected');
  const tags = eventsOf('ElementDisconnected')[0].params.value.data.tags;
  assert.equal(tags.length, 1, JSON.stringify(tags));
  assert.equal(tags[0].key, 'k');
  assert.equal(tags[0].value, 'v');
  await raw.call('unsubscribe', { object: a, subscription: s.result.value, sessionId });
});

test('events go only to subscribing sessions', T, async () => {
  const other = await h.RawClient.open(server.url);
  try {
    const s = await other.call('subscribe', { object: a, type: 'ElementConnected' });
    assert.ok(s.result, JSON.stringify(s));
    const otherSession = s.result.sessionId;
    assert.notEqual(otherSession, sessionId);
    raw.notifications.length = 0;
    await raw.call('invoke', { object: a, operation: 'connect', operationParams: { sink: b, mediaType: 'VIDEO' }, sessionId });
    await h.waitFor(() => other.notifications.length >= 1, 5000, 'ElementConnected on the other session');
    await h.sleep(300);
    assert.equal(eventsOf('ElementConnected').length, 0, 'non-subscribed session got the event');
  } finally {
    await other.close();
  }
});

test('official client: on() subscribes once, removing the last listener unsubscribes', T, async () => {
  const client = (await h.connectClient(server.url)).client;
  try {
    const pipeline = await client.getMediaobjectById(pipelineId);
    assert.equal(pipeline.id, pipelineId);
    assert.equal(pipeline.constructor.name, 'MediaPipeline');
    const src = await pipeline.create('PassThrough');
    const sink = await pipeline.create('PassThrough');
    const got1 = [];
    const got2 = [];
    const l1 = (ev) => got1.push(ev);
    const l2 = (ev) => got2.push(ev);
    src.on('ElementConnected', l1);
    src.on('ElementConnected', l2);
    await src.getName();
    await src.connect(sink, 'AUDIO');
    await h.waitFor(() => got1.length >= 1 && got2.length >= 1, 5000, 'event in both listeners');
    await h.sleep(300);
    assert.equal(got1.length, 1);
    assert.equal(got2.length, 1);
    src.removeListener('ElementConnected', l1);
    src.removeListener('ElementConnected', l2);
    await src.getName();
    await h.sleep(200);
    await src.connect(sink, 'VIDEO');
    await h.sleep(500);
    assert.equal(got1.length, 1);
    assert.equal(got2.length, 1);
  } finally {
    await h.closeClient(client);
  }
});
