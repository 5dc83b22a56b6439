'use strict';
// Transactions (PROTOCOL.md §2 `transaction`).
// kurento-client's Transaction calls require('domain').Domain without `new`, which
// throws on Node >= 10; without Domain the client uses its own fallback.
require('domain').Domain = undefined;

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let client;
let raw;

before(async () => {
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  raw = await h.RawClient.open(server.url);
});

after(async () => {
  if (raw) await raw.close();
  await h.closeClient(client);
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };
const idOf = (x) => (typeof x === 'string' ? x : x && x.id);

test('chained creation without awaiting (pipeline proxy used before it has an id)', T, async () => {
  const pipeline = client.create('MediaPipeline');
  const a = pipeline.create('PassThrough');
  const b = pipeline.create('PassThrough');
  await a.connect(b);
  await Promise.all([pipeline, a, b]);
  assert.match(pipeline.id, h.PIPELINE_ID_RE);
  assert.ok(a.id.startsWith(`${pipeline.id}/`));
  const sinks = await a.getSinkConnections('VIDEO');
  assert.equal(idOf(sinks[0].sink), b.id);
  await pipeline.release();
});

test('useImplicitTransactions: queued requests are sent as one transaction', T, async () => {
  const c2 = (await h.connectClient(server.url, { useImplicitTransactions: true })).client;
  try {
    const pipeline = await c2.create('MediaPipeline');
    // Issued in the same tick -> batched into a `transaction` request.
    const [, n2, n3] = await Promise.all([pipeline.setName('batched'), pipeline.getName(), pipeline.getCreationTime()]);
    assert.equal(n2, 'batched');
    assert.ok(Number.isInteger(n3), `creationTime ${n3}`);
    await pipeline.release();
  } finally {
    await h.closeClient(c2);
  }
});

test('explicit transaction on a pipeline: create two elements, commit, connect', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  const tx = pipeline.beginTransaction();
  const a = pipeline.create(tx, 'PassThrough');
  const b = pipeline.create(tx, 'PassThrough');
  // Note: `a.connect(tx, b)` cannot be used with kurento-client 7.3.0: the generated
  // MediaElement.connect shifts the transaction argument twice and sends the connect
  // outside the transaction (TransactionNotCommitedException). See the transaction(fn)
  // test below for a connect inside a transaction.
  await tx.commit();
  assert.equal(tx.commited, true);
  await Promise.all([a, b]);
  assert.ok(a.id.startsWith(`${pipeline.id}/`), a.id);
  assert.ok(b.id.startsWith(`${pipeline.id}/`), b.id);
  await a.connect(b);
  // The ids resolve on the server, from another session too.
  const other = (await h.connectClient(server.url)).client;
  try {
    const seenA = await other.getMediaobjectById(a.id);
    assert.equal(seenA.constructor.name, 'PassThrough');
  } finally {
    await h.closeClient(other);
  }
  const sinks = await a.getSinkConnections();
  assert.deepEqual(sinks.map((c) => c.type).sort(), ['AUDIO', 'DATA', 'VIDEO']);
  assert.ok(sinks.every((c) => idOf(c.sink) === b.id));
  await pipeline.release();
});

test('explicit transaction on the client: pipeline + element created in one batch', T, async () => {
  const tx = client.beginTransaction();
  const pipeline = client.create(tx, 'MediaPipeline');
  const el = pipeline.create(tx, 'PassThrough');
  // A callback is required here: without one the client's argument shifting turns
  // the value into the callback (kurento-client 7.3.0 bug in generated setters).
  pipeline.setName(tx, 'from-tx', () => {});
  await tx.commit();
  await Promise.all([pipeline, el]);
  assert.match(pipeline.id, h.PIPELINE_ID_RE);
  assert.ok(el.id.startsWith(`${pipeline.id}/`), el.id);
  assert.equal(await pipeline.getName(), 'from-tx');
  const children = await pipeline.getChildren();
  assert.deepEqual(children.map((c) => c.id), [el.id]);
  await pipeline.release();
});

test('pipeline.transaction(fn): create two elements and connect them in one batch', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  let a;
  let b;
  await pipeline.transaction(function () {
    a = this.create('PassThrough');
    b = this.create('PassThrough');
    a.connect(b);
  });
  await Promise.all([a, b]);
  assert.ok(a.id.startsWith(`${pipeline.id}/`));
  assert.ok(b.id.startsWith(`${pipeline.id}/`));
  assert.notEqual(a.id, b.id);
  const sinks = await a.getSinkConnections();
  assert.deepEqual(sinks.map((c) => c.type).sort(), ['AUDIO', 'DATA', 'VIDEO']);
  assert.ok(sinks.every((c) => idOf(c.sink) === b.id));
  await pipeline.release();
});

test('raw transaction with newref and sub-response shapes', T, async () => {
  const res = await raw.call('transaction', {
    operations: [
      { jsonrpc: '2.0', id: 0, method: 'create', params: { type: 'MediaPipeline', properties: {} } },
      { jsonrpc: '2.0', id: 1, method: 'create', params: { type: 'PassThrough', constructorParams: { mediaPipeline: 'newref:0' }, properties: {} } },
      { jsonrpc: '2.0', id: 2, method: 'create', params: { type: 'PassThrough', constructorParams: { mediaPipeline: 'newref:0' }, properties: {} } },
      { jsonrpc: '2.0', id: 3, method: 'invoke', params: { object: 'newref:1', operation: 'connect', operationParams: { sink: 'newref:2', mediaType: 'VIDEO' } } },
      { jsonrpc: '2.0', id: 4, method: 'invoke', params: { object: 'newref:0', operation: 'getName' } },
    ],
  });
  assert.ok(res.result, JSON.stringify(res));
  const sessionId = res.result.sessionId;
  assert.match(sessionId, h.UUID_RE);
  const subs = res.result.value;
  assert.ok(Array.isArray(subs));
  assert.equal(subs.length, 5, JSON.stringify(subs));
  subs.forEach((s, i) => {
    assert.equal(s.id, i);
    assert.equal(s.jsonrpc, '2.0');
    assert.ok(s.result, `sub-operation ${i} failed: ${JSON.stringify(s)}`);
    assert.equal(s.result.sessionId, sessionId);
  });
  const [pid, aid, bid] = [subs[0].result.value, subs[1].result.value, subs[2].result.value];
  assert.match(pid, h.PIPELINE_ID_RE);
  assert.ok(aid.startsWith(`${pid}/`), aid);
  assert.ok(bid.startsWith(`${pid}/`), bid);
  assert.equal(subs[3].result.value, null);
  assert.equal(subs[4].result.value, pid);

  // The objects exist outside the transaction too.
  const d = await raw.call('describe', { object: aid, sessionId });
  assert.equal(d.result.type, 'PassThrough');
  assert.equal(d.result.qualifiedType, 'kurento.PassThrough');
  const conns = await raw.call('invoke', { object: aid, operation: 'getSinkConnections', sessionId });
  assert.equal(conns.result.value.length, 1, JSON.stringify(conns));
  assert.equal(conns.result.value[0].type, 'VIDEO');
  assert.equal(conns.result.value[0].sink, bid);
  await raw.call('release', { object: pid, sessionId });
});

test('raw transaction stops at the first failing operation', T, async () => {
  const res = await raw.call('transaction', {
    operations: [
      { jsonrpc: '2.0', id: 0, method: 'create', params: { type: 'MediaPipeline' } },
      { jsonrpc: '2.0', id: 1, method: 'invoke', params: { object: 'newref:0', operation: 'noSuchOperation' } },
      { jsonrpc: '2.0', id: 2, method: 'invoke', params: { object: 'newref:0', operation: 'setName', operationParams: { name: 'must-not-run' } } },
    ],
  });
  // The outer call succeeds even if a sub-operation fails.
  assert.ok(res.result, JSON.stringify(res));
  const sessionId = res.result.sessionId;
  const subs = res.result.value;
  assert.equal(subs.length, 2, `execution must stop after the failing operation: ${JSON.stringify(subs)}`);
  assert.ok(subs[0].result);
  assert.equal(subs[1].id, 1);
  assert.ok(subs[1].error, JSON.stringify(subs[1]));
  assert.equal(subs[1].error.code, 40008);
  const pid = subs[0].result.value;
  const name = await raw.call('invoke', { object: pid, operation: 'getName', sessionId });
  assert.equal(name.result.value, pid, 'operation after the failing one was executed');
  await raw.call('release', { object: pid, sessionId });
});

test('raw transaction with wrong sub-request ids -> 40008', T, async () => {
  const res = await raw.call('transaction', {
    operations: [{ jsonrpc: '2.0', id: 5, method: 'create', params: { type: 'MediaPipeline' } }],
  });
  assert.ok(res.error, JSON.stringify(res));
  assert.equal(res.error.code, 40008);
  const bad = await raw.call('transaction', {
    operations: [{ jsonrpc: '2.0', id: 0, method: 'invoke', params: { object: 'newref:7', operation: 'getName' } }],
  });
  // A bad newref either fails the whole call or the sub-operation, always with 40008.
  const code = bad.error ? bad.error.code : bad.result.value[0].error && bad.result.value[0].error.code;
  assert.equal(code, 40008, JSON.stringify(bad));
  const ping = await raw.call('ping');
  assert.equal(ping.result.value, 'pong');
});
