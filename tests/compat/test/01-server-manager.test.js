'use strict';
// Connection + ServerManager (PROTOCOL.md §8, §9).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const os = require('node:os');
const h = require('./helpers');

let server;
let client;
let manager;

before(async () => {
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  manager = await client.getServerManager();
});

after(async () => {
  await h.closeClient(client);
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };

test('client connects in strict mode and gets a session id', T, () => {
  assert.equal(typeof client.sessionId, 'string');
  assert.match(client.sessionId, h.UUID_RE);
});

test('getServerManager returns the ServerManager singleton', T, () => {
  assert.equal(manager.id, 'manager_ServerManager');
  assert.equal(manager.constructor.name, 'ServerManager');
});

test('getInfo: KMS, transactions capability, core/elements/filters modules', T, async () => {
  const info = await manager.getInfo();
  assert.equal(info.type, 'KMS');
  assert.deepEqual(info.capabilities, ['transactions']);
  assert.equal(typeof info.version, 'string');
  assert.ok(info.version.length > 0);
  const names = info.modules.map((m) => m.name);
  for (const name of ['core', 'elements', 'filters']) {
    assert.ok(names.includes(name), `module ${name} missing from ${JSON.stringify(names)}`);
  }
  for (const m of info.modules) {
    assert.equal(typeof m.version, 'string');
    assert.equal(typeof m.generationTime, 'string');
    assert.ok(Array.isArray(m.factories));
  }
  const core = info.modules.find((m) => m.name === 'core');
  assert.ok(core.factories.includes('MediaPipeline'), JSON.stringify(core.factories));
  assert.ok(core.factories.includes('PassThrough'), JSON.stringify(core.factories));
});

test('getCpuCount is an integer >= 1', T, async () => {
  const n = await manager.getCpuCount();
  assert.ok(Number.isInteger(n), `not an integer: ${n}`);
  assert.ok(n >= 1);
});

test('getUsedCpu is a percentage within 0..100*cpus', T, async () => {
  const cpus = await manager.getCpuCount();
  const withInterval = await manager.getUsedCpu(200);
  assert.equal(typeof withInterval, 'number');
  assert.ok(withInterval >= 0 && withInterval <= 100 * Math.max(cpus, os.cpus().length), `${withInterval}`);
  // Without interval the server applies the kmd default (1000 ms).
  const withDefault = await manager.getUsedCpu();
  assert.equal(typeof withDefault, 'number');
  assert.ok(withDefault >= 0 && withDefault <= 100 * Math.max(cpus, os.cpus().length), `${withDefault}`);
});

test('getUsedMemory is a positive number (KiB)', T, async () => {
  const kib = await manager.getUsedMemory();
  assert.equal(typeof kib, 'number');
  assert.ok(kib > 0);
});

test('getPipelines / getSessions list ids', T, async () => {
  const before = await manager.getPipelines();
  assert.ok(Array.isArray(before));
  const pipeline = await client.create('MediaPipeline');
  const pipelines = await manager.getPipelines();
  assert.ok(Array.isArray(pipelines));
  assert.ok(
    pipelines.some((p) => p.id === pipeline.id),
    `pipeline ${pipeline.id} not in ${JSON.stringify(pipelines.map((p) => p.id))}`,
  );
  const sessions = await manager.getSessions();
  assert.ok(Array.isArray(sessions));
  assert.ok(sessions.includes(client.sessionId), `session ${client.sessionId} not in ${JSON.stringify(sessions)}`);
  await pipeline.release();
  const after = await manager.getPipelines();
  assert.ok(!after.some((p) => p.id === pipeline.id), 'released pipeline still listed');
});

test('getMetadata returns a string', T, async () => {
  const md = await manager.getMetadata();
  assert.equal(typeof md, 'string');
});

test("getKmd('core') returns the core kmd as JSON text", T, async () => {
  const text = await manager.getKmd('core');
  assert.equal(typeof text, 'string');
  const kmd = JSON.parse(text);
  assert.equal(kmd.name, 'core');
});

test("getKmd('nope') rejects with 40500", T, async () => {
  await h.rejectsWithCode(h.callback(manager, 'getKmd', 'nope'), 40500, assert);
});

test('ServerManager MediaObject getters', T, async () => {
  assert.equal(await manager.getName(), 'manager_ServerManager');
  const children = await manager.getChildren();
  assert.ok(Array.isArray(children));
});
