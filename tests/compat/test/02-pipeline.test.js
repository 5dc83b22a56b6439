'use strict';
// MediaPipeline lifecycle, MediaObject properties, tags, ObjectCreated/ObjectDestroyed.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let client;

before(async () => {
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
});

after(async () => {
  await h.closeClient(client);
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };

test('create MediaPipeline: id format, name defaults to id, creation time', T, async () => {
  const t0 = Math.floor(Date.now() / 1000);
  const pipeline = await client.create('MediaPipeline');
  assert.match(pipeline.id, h.PIPELINE_ID_RE);
  assert.equal(await pipeline.getName(), pipeline.id);
  const created = await pipeline.getCreationTime();
  assert.ok(Number.isInteger(created), `creationTime not an integer: ${created}`);
  // Seconds since the epoch (not ms), close to now.
  assert.ok(Math.abs(created - t0) <= 60, `creationTime ${created} vs now ${t0}`);
  const children = await pipeline.getChildren();
  assert.deepEqual(children, []);
  await pipeline.release();
});

test('setName / getName', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  await pipeline.setName('my pipeline');
  assert.equal(await pipeline.getName(), 'my pipeline');
  // The id does not change with the name.
  assert.match(pipeline.id, h.PIPELINE_ID_RE);
  await pipeline.release();
});

test('tags: addTag / getTag / getTags / removeTag; missing key -> 40110', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  assert.deepEqual(await pipeline.getTags(), []);
  await pipeline.addTag('room', 'blue');
  await pipeline.addTag('user', 'alice');
  assert.equal(await pipeline.getTag('room'), 'blue');
  assert.equal(await pipeline.getTag('user'), 'alice');
  const tags = await pipeline.getTags();
  assert.ok(Array.isArray(tags));
  const plain = tags.map((t) => ({ key: t.key, value: t.value })).sort((a, b) => a.key.localeCompare(b.key));
  assert.deepEqual(plain, [
    { key: 'room', value: 'blue' },
    { key: 'user', value: 'alice' },
  ]);
  // Re-adding a key replaces its value.
  await pipeline.addTag('room', 'red');
  assert.equal(await pipeline.getTag('room'), 'red');
  await pipeline.removeTag('room');
  const err = await h.rejectsWithCode(h.callback(pipeline, 'getTag', 'room'), 40110, assert);
  assert.equal(err.data && err.data.type, 'MEDIA_OBJECT_TAG_KEY_NOT_FOUND');
  assert.deepEqual(
    (await pipeline.getTags()).map((t) => t.key),
    ['user'],
  );
  await pipeline.release();
});

test('sendTagsInEvents defaults to false and can be set', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  assert.equal(await pipeline.getSendTagsInEvents(), false);
  await pipeline.setSendTagsInEvents(true);
  assert.equal(await pipeline.getSendTagsInEvents(), true);
  await pipeline.release();
});

test('MediaPipeline latencyStats property', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  assert.equal(await pipeline.getLatencyStats(), false);
  await pipeline.setLatencyStats(true);
  assert.equal(await pipeline.getLatencyStats(), true);
  await pipeline.release();
});

test('release: the pipeline is gone afterwards (40101 through another client)', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  const id = pipeline.id;
  await pipeline.release();
  const other = (await h.connectClient(server.url)).client;
  try {
    await h.rejectsWithCode(other.getMediaobjectById(id), 40101, assert);
  } finally {
    await h.closeClient(other);
  }
});

test('ObjectCreated / ObjectDestroyed on the ServerManager, with release cascade', T, async () => {
  const manager = await client.getServerManager();
  const created = [];
  const destroyed = [];
  const onCreated = (ev) => created.push(ev);
  const onDestroyed = (ev) => destroyed.push(ev);
  manager.on('ObjectCreated', onCreated);
  manager.on('ObjectDestroyed', onDestroyed);
  // Round trip so both subscriptions are in place before creating anything.
  await manager.getCpuCount();

  const pipeline = await client.create('MediaPipeline');
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');

  await h.waitFor(() => [pipeline.id, a.id, b.id].every((id) => created.some((e) => e.object === id)), 5000, 'ObjectCreated for pipeline and 2 elements');
  for (const ev of created.filter((e) => [pipeline.id, a.id, b.id].includes(e.object))) {
    assert.equal(ev.source, 'manager_ServerManager');
    assert.equal(typeof ev.timestampMillis, 'string');
    assert.match(ev.timestampMillis, /^\d+$/);
    assert.ok(Array.isArray(ev.tags));
  }

  await pipeline.release();
  await h.waitFor(
    () => [pipeline.id, a.id, b.id].every((id) => destroyed.some((e) => e.objectId === id)),
    5000,
    'ObjectDestroyed for pipeline and both PassThrough elements (cascade)',
  );
  for (const ev of destroyed.filter((e) => [pipeline.id, a.id, b.id].includes(e.objectId))) {
    assert.equal(ev.source, 'manager_ServerManager');
  }

  manager.removeListener('ObjectCreated', onCreated);
  manager.removeListener('ObjectDestroyed', onDestroyed);
});

test('objects created by one session are visible from another session', T, async () => {
  const pipeline = await client.create('MediaPipeline');
  await pipeline.setName('shared');
  const other = (await h.connectClient(server.url)).client;
  try {
    assert.notEqual(other.sessionId, client.sessionId);
    const seen = await other.getMediaobjectById(pipeline.id);
    assert.equal(seen.id, pipeline.id);
    assert.equal(seen.constructor.name, 'MediaPipeline');
    assert.equal(await seen.getName(), 'shared');
  } finally {
    await h.closeClient(other);
  }
  await pipeline.release();
});
