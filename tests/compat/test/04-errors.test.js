'use strict';
// Error replies (PROTOCOL.md §2, §6): through the official client and with raw frames.
// After every bad frame the same socket must keep answering.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let client;
let raw;
let sessionId;
let pipelineId;

before(async () => {
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  raw = await h.RawClient.open(server.url);
  const res = await raw.call('create', { type: 'MediaPipeline', constructorParams: {}, properties: {} });
  assert.ok(res.result, JSON.stringify(res));
  sessionId = res.result.sessionId;
  pipelineId = res.result.value;
});

after(async () => {
  if (raw) await raw.close();
  await h.closeClient(client);
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };

/** The raw socket still answers a ping with pong. */
async function assertAlive() {
  const res = await raw.call('ping', { interval: 5000 });
  assert.equal(res.jsonrpc, '2.0');
  assert.ok(res.result, `ping failed: ${JSON.stringify(res)}`);
  assert.equal(res.result.value, 'pong');
  assert.equal(server.exited, null, 'server process exited');
}

function assertError(res, code) {
  assert.equal(res.jsonrpc, '2.0', JSON.stringify(res));
  assert.ok(res.error, `expected an error, got ${JSON.stringify(res)}`);
  assert.equal(res.result, undefined, 'response has both result and error');
  if (code !== undefined) assert.equal(res.error.code, code, JSON.stringify(res.error));
  assert.equal(typeof res.error.message, 'string');
  return res.error;
}

test('client: unknown object id -> 40101 (ReferenceError)', T, async () => {
  const err = await h.rejectsWithCode(client.getMediaobjectById('nope_kurento.MediaPipeline'), 40101, assert);
  assert.ok(err instanceof ReferenceError, `expected ReferenceError, got ${err.constructor.name}`);
  assert.equal(err.data && err.data.type, 'MEDIA_OBJECT_NOT_FOUND');
});

test('raw: invoke on a released object -> 40101', T, async () => {
  const created = await raw.call('create', { type: 'MediaPipeline', sessionId });
  const id = created.result.value;
  const rel = await raw.call('release', { object: id, sessionId });
  assert.ok(rel.result, JSON.stringify(rel));
  assert.equal(rel.result.sessionId, sessionId);
  const res = await raw.call('invoke', { object: id, operation: 'getName', sessionId });
  const err = assertError(res, 40101);
  assert.deepEqual(err.data, { type: 'MEDIA_OBJECT_NOT_FOUND' });
  // Releasing again is a silent success.
  const again = await raw.call('release', { object: id, sessionId });
  assert.ok(again.result, JSON.stringify(again));
  await assertAlive();
});

test('client: create of a model class that may not be implemented yet', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  try {
    const el = await pipeline.create('WebRtcEndpoint');
    // Implemented: it must be a real element of the pipeline.
    assert.ok(el.id.startsWith(`${pipeline.id}/`), el.id);
    assert.ok(el.id.endsWith('_kurento.WebRtcEndpoint'), el.id);
  } catch (err) {
    assert.ok(
      Number.isInteger(err.code) && err.code >= 40000 && err.code < 50000,
      `expected a 40xxx Kurento code, got ${err.code}: ${err.message}`,
    );
    assert.ok(err.message.includes('WebRtcEndpoint'), err.message);
  }
  await pipeline.release();
});

test('raw: create of an unknown type -> 40108 Factory not found', T, async () => {
  const res = await raw.call('create', {
    type: 'NoSuchElement',
    constructorParams: { mediaPipeline: pipelineId },
    properties: {},
    sessionId,
  });
  const err = assertError(res, 40108);
  assert.ok(err.message.includes('NoSuchElement'), err.message);
  assert.deepEqual(err.data, { type: 'MEDIA_OBJECT_NOT_AVAILABLE' });
  // Abstract classes have no factory either.
  const abs = await raw.call('create', { type: 'MediaElement', constructorParams: { mediaPipeline: pipelineId }, sessionId });
  assertError(abs, 40108);
  await assertAlive();
});

test('raw: setName with a value that is not a string -> error, not a crash', T, async () => {
  const res = await raw.call('invoke', {
    object: pipelineId,
    operation: 'setName',
    operationParams: { name: { not: 'a string' } },
    sessionId,
  });
  assertError(res);
  await assertAlive();
  // A number is a JSON scalar: KMS (jsoncpp isConvertibleTo(string)) may accept it.
  // Either way the answer must be well-formed and the server must survive.
  const num = await raw.call('invoke', { object: pipelineId, operation: 'setName', operationParams: { name: 42 }, sessionId });
  assert.ok(num.result || num.error, JSON.stringify(num));
  if (num.result) {
    const name = await raw.call('invoke', { object: pipelineId, operation: 'getName', sessionId });
    assert.equal(String(name.result.value), '42');
  }
  await assertAlive();
});

test('raw: ill-typed int / boolean params -> error, not a crash', T, async () => {
  const pt = await raw.call('create', {
    type: 'PassThrough',
    constructorParams: { mediaPipeline: pipelineId },
    properties: {},
    sessionId,
  });
  assert.ok(pt.result, JSON.stringify(pt));
  const bad1 = await raw.call('invoke', {
    object: pt.result.value,
    operation: 'setMinEncoderBitrate',
    operationParams: { minEncoderBitrate: 'fast' },
    sessionId,
  });
  assertError(bad1);
  await assertAlive();
  const bad2 = await raw.call('invoke', {
    object: pipelineId,
    operation: 'setSendTagsInEvents',
    operationParams: { sendTagsInEvents: 'yes' },
    sessionId,
  });
  assertError(bad2);
  await assertAlive();
  const bad3 = await raw.call('invoke', {
    object: pt.result.value,
    operation: 'connect',
    operationParams: { sink: pt.result.value, mediaType: 'SMELL' },
    sessionId,
  });
  assertError(bad3);
  await assertAlive();
  // Missing required method param.
  const bad4 = await raw.call('invoke', { object: pipelineId, operation: 'addTag', operationParams: { key: 'k' }, sessionId });
  assertError(bad4);
  await assertAlive();
});

test('raw: unknown operation -> 40008', T, async () => {
  const res = await raw.call('invoke', { object: pipelineId, operation: 'fooBar', sessionId });
  const err = assertError(res, 40008);
  assert.ok(err.message.includes('fooBar'), err.message);
  assert.deepEqual(err.data, { type: 'MALFORMED_TRANSACTION' });
  await assertAlive();
});

test('raw: unknown method -> -32601', T, async () => {
  const res = await raw.call('frobnicate', { sessionId });
  assertError(res, -32601);
  await assertAlive();
});

test('raw: malformed JSON -> -32700 with id null', T, async () => {
  raw.sendText('{"jsonrpc":"2.0","method":"ping", this is not json');
  const res = await raw.nextUnmatched((m) => m && m.error, 5000);
  assert.equal(res.id, null);
  assertError(res, -32700);
  await assertAlive();
});

test('raw: invalid envelope -> -32600', T, async () => {
  raw.sendText(JSON.stringify({ jsonrpc: '1.0', method: 'ping', id: 77001 }));
  const res = await raw.nextUnmatched((m) => m && m.error, 5000);
  assertError(res, -32600);
  await assertAlive();
  raw.sendText(JSON.stringify({ jsonrpc: '2.0', method: 42, id: 77002 }));
  const res2 = await raw.nextUnmatched((m) => m && m.error, 5000);
  assertError(res2, -32600);
  await assertAlive();
});

test('raw: missing params -> -32602; missing required param -> -32000', T, async () => {
  const noParams = await raw.request({ jsonrpc: '2.0', method: 'create', id: 77003 });
  assertError(noParams, -32602);
  await assertAlive();
  const noType = await raw.call('create', { constructorParams: {}, sessionId });
  const err = assertError(noType, -32000);
  assert.ok(err.message.includes('type'), err.message);
  await assertAlive();
  const noObject = await raw.call('invoke', { operation: 'getName', sessionId });
  assertError(noObject, -32000);
  await assertAlive();
});

test('raw: subscribe to an unsupported event -> 40106', T, async () => {
  const res = await raw.call('subscribe', { object: pipelineId, type: 'NoSuchEvent', sessionId });
  const err = assertError(res, 40106);
  assert.ok(err.message.includes('NoSuchEvent'), err.message);
  await assertAlive();
});

test('raw: newref outside a transaction -> 40109', T, async () => {
  const res = await raw.call('invoke', { object: 'newref:0', operation: 'getName', sessionId });
  assertError(res, 40109);
  await assertAlive();
});

test('raw: keepAlive / connect with an unknown session -> 40007', T, async () => {
  const ka = await raw.call('keepAlive', { sessionId: '00000000-0000-4000-8000-000000000000' });
  assertError(ka, 40007);
  const other = await h.RawClient.open(server.url);
  try {
    const c = await other.call('connect', { sessionId: '00000000-0000-4000-8000-000000000001' });
    assertError(c, 40007);
    // A known session is accepted.
    const ok = await other.call('connect', { sessionId });
    assert.ok(ok.result, JSON.stringify(ok));
    assert.equal(ok.result.sessionId, sessionId);
    assert.match(ok.result.serverId, h.UUID_RE);
  } finally {
    await other.close();
  }
  await assertAlive();
});

test('client: error responses map to JS errors with code/message/data', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  const err = await h.rejectsWithCode(h.callback(pipeline, 'getTag', 'missing'), 40110, assert);
  assert.equal(typeof err.message, 'string');
  await pipeline.release();
});
