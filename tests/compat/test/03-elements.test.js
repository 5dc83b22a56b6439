'use strict';
// MediaElement basics with PassThrough: ids, parent/pipeline, connections, events, dot, bitrates.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
let client;
let pipeline;

before(async () => {
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
});

const T = { timeout: h.TEST_TIMEOUT };
const idOf = (x) => (typeof x === 'string' ? x : x && x.id);
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('PassThrough: id format, getMediaPipeline / getParent, pipeline children', T, async () => {
  const el = await pipeline.create('PassThrough');
  assert.match(el.id, new RegExp(`^${escapeRe(pipeline.id)}/${h.UUID}_kurento\\.PassThrough$`));
  assert.equal(el.constructor.name, 'PassThrough');
  const mp = await el.getMediaPipeline();
  assert.equal(mp.id, pipeline.id);
  const parent = await el.getParent();
  assert.equal(parent.id, pipeline.id);
  assert.equal(await el.getName(), el.id);
  const children = await pipeline.getChildren();
  assert.ok(children.some((c) => c.id === el.id), JSON.stringify(children.map((c) => c.id)));
  assert.ok(children.every((c) => c.id.startsWith(`${pipeline.id}/`)));
  await el.release();
  const after = await pipeline.getChildren();
  assert.ok(!after.some((c) => c.id === el.id), 'released element still a child');
});

test('connect / disconnect without mediaType: source and sink connections', T, async () => {
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');
  await a.connect(b);

  const sinks = await a.getSinkConnections();
  assert.ok(Array.isArray(sinks));
  const types = sinks.map((c) => c.type).sort();
  assert.deepEqual(types, ['AUDIO', 'DATA', 'VIDEO'], `sink connections: ${JSON.stringify(sinks)}`);
  for (const c of sinks) {
    assert.equal(idOf(c.source), a.id);
    assert.equal(idOf(c.sink), b.id);
    assert.equal(typeof c.sourceDescription, 'string');
    assert.equal(typeof c.sinkDescription, 'string');
  }
  const sources = await b.getSourceConnections();
  assert.deepEqual(sources.map((c) => c.type).sort(), ['AUDIO', 'DATA', 'VIDEO']);
  for (const c of sources) {
    assert.equal(idOf(c.source), a.id);
    assert.equal(idOf(c.sink), b.id);
  }
  assert.deepEqual(await a.getSourceConnections(), []);
  assert.deepEqual(await b.getSinkConnections(), []);

  // Filter by media type.
  const video = await a.getSinkConnections('VIDEO');
  assert.equal(video.length, 1);
  assert.equal(video[0].type, 'VIDEO');

  await a.disconnect(b);
  assert.deepEqual(await a.getSinkConnections(), []);
  assert.deepEqual(await b.getSourceConnections(), []);
  await a.release();
  await b.release();
});

test('connect / disconnect with a mediaType', T, async () => {
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');
  await a.connect(b, 'VIDEO');
  let sinks = await a.getSinkConnections();
  assert.deepEqual(sinks.map((c) => c.type), ['VIDEO']);
  await a.connect(b, 'AUDIO');
  sinks = await a.getSinkConnections();
  assert.deepEqual(sinks.map((c) => c.type).sort(), ['AUDIO', 'VIDEO']);
  await a.connect(b, 'DATA');
  sinks = await a.getSinkConnections();
  assert.deepEqual(sinks.map((c) => c.type).sort(), ['AUDIO', 'DATA', 'VIDEO']);

  await a.disconnect(b, 'AUDIO');
  sinks = await a.getSinkConnections();
  assert.deepEqual(sinks.map((c) => c.type).sort(), ['DATA', 'VIDEO']);
  assert.deepEqual((await b.getSourceConnections('AUDIO')), []);
  assert.equal((await b.getSourceConnections('VIDEO')).length, 1);
  await a.disconnect(b);
  assert.deepEqual(await a.getSinkConnections(), []);
  await a.release();
  await b.release();
});

test('a source can feed several sinks; a new source replaces the old one on the sink', T, async () => {
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');
  const c = await pipeline.create('PassThrough');
  await a.connect(b, 'VIDEO');
  await a.connect(c, 'VIDEO');
  const sinks = (await a.getSinkConnections('VIDEO')).map((x) => idOf(x.sink)).sort();
  assert.deepEqual(sinks, [b.id, c.id].sort());
  // A sink pad has at most one source per media type: connecting c -> b replaces a -> b.
  await c.connect(b, 'VIDEO');
  const srcOfB = await b.getSourceConnections('VIDEO');
  assert.equal(srcOfB.length, 1);
  assert.equal(idOf(srcOfB[0].source), c.id);
  assert.deepEqual((await a.getSinkConnections('VIDEO')).map((x) => idOf(x.sink)), [c.id]);
  await Promise.all([a.release(), b.release(), c.release()]);
});

test('ElementConnected / ElementDisconnected events', T, async () => {
  const a = await pipeline.create('PassThrough');
  const b = await pipeline.create('PassThrough');
  const connected = [];
  const disconnected = [];
  a.on('ElementConnected', (ev) => connected.push(ev));
  a.on('ElementDisconnected', (ev) => disconnected.push(ev));
  await a.getName(); // round trip: subscriptions in place

  await a.connect(b, 'VIDEO');
  await h.waitFor(() => connected.length >= 1, 5000, 'ElementConnected');
  const ev = connected[0];
  assert.equal(idOf(ev.sink), b.id);
  assert.equal(ev.mediaType, 'VIDEO');
  assert.equal(ev.source, a.id);
  assert.equal(ev.type, 'ElementConnected');
  assert.equal(typeof ev.timestampMillis, 'string');
  assert.equal(typeof ev.sourceMediaDescription, 'string');
  assert.equal(typeof ev.sinkMediaDescription, 'string');

  await a.disconnect(b, 'VIDEO');
  await h.waitFor(() => disconnected.length >= 1, 5000, 'ElementDisconnected');
  assert.equal(idOf(disconnected[0].sink), b.id);
  assert.equal(disconnected[0].mediaType, 'VIDEO');
  assert.equal(disconnected[0].type, 'ElementDisconnected');

  // Full connect (no media type) reports each media type.
  connected.length = 0;
  await a.connect(b);
  await h.waitFor(() => connected.length >= 3, 5000, '3 ElementConnected (AUDIO, DATA, VIDEO)');
  await h.sleep(200);
  assert.deepEqual(connected.map((e) => e.mediaType).sort(), ['AUDIO', 'DATA', 'VIDEO']);
  await a.release();
  await b.release();
});

test('getGstreamerDot returns a dot graph', T, async () => {
  const a = await pipeline.create('PassThrough');
  const dot = await pipeline.getGstreamerDot();
  assert.equal(typeof dot, 'string');
  assert.ok(dot.startsWith('digraph'), dot.slice(0, 80));
  const elDot = await a.getGstreamerDot();
  assert.equal(typeof elDot, 'string');
  assert.ok(elDot.startsWith('digraph'), elDot.slice(0, 80));
  const detailed = await pipeline.getGstreamerDot('SHOW_ALL');
  assert.ok(detailed.startsWith('digraph'));
  await a.release();
});

test('encoder bitrate properties', T, async () => {
  const a = await pipeline.create('PassThrough');
  assert.equal(typeof (await a.getMinEncoderBitrate()), 'number');
  assert.equal(typeof (await a.getMaxEncoderBitrate()), 'number');
  assert.equal(typeof (await a.getEncoderBitrate()), 'number');
  await a.setMinEncoderBitrate(100000);
  await a.setMaxEncoderBitrate(2000000);
  await a.setEncoderBitrate(500000);
  assert.equal(await a.getMinEncoderBitrate(), 100000);
  assert.equal(await a.getMaxEncoderBitrate(), 2000000);
  assert.equal(await a.getEncoderBitrate(), 500000);
  await a.release();
});

test('isMediaFlowingIn / isMediaFlowingOut are false without media', T, async () => {
  const a = await pipeline.create('PassThrough');
  assert.equal(await a.isMediaFlowingIn('VIDEO'), false);
  assert.equal(await a.isMediaFlowingOut('AUDIO'), false);
  assert.equal(await a.isMediaTranscoding('VIDEO'), false);
  await a.release();
});

test('releasing the pipeline releases its elements', T, async () => {
  const p = await client.create('MediaPipeline');
  const a = await p.create('PassThrough');
  const id = a.id;
  await p.release();
  const other = (await h.connectClient(server.url)).client;
  try {
    await h.rejectsWithCode(other.getMediaobjectById(id), 40101, assert);
  } finally {
    await h.closeClient(other);
  }
});
