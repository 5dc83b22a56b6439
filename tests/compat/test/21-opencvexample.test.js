'use strict';
// OpenCVExample (Kurento's optional opencvexample module), a compiled-in module built on
// Fluo's OpenCVFilter base (crates/fluo-module-opencvexample, docs/modules.md), through the
// official client. kurento-module-opencvexample is not on npm: the client module is
// ./opencvexample-client.js, a class inheriting kurento-client's OpenCVFilter as the
// generated modules do, registered with kurentoClient.register. getInfo and getKmd list the
// module and its class extending OpenCVFilter; the element is an OpenCVFilter to clients
// (describe's type and hierarchy; a client that has not seen it builds it as an
// OpenCVExample, or without the module's classes as an OpenCVFilter that works as a
// MediaElement; connections; a Filter's media-flow events); a clip of a grey
// band and a red band on black goes through it into a recording: by default the frames
// show the three band edges white on black, after setEdgeThreshold(300) only the red band's
// (the grey band's edge is under the threshold now; a threshold over the kmd's 0..255 is
// taken as KMS takes it), after setFilterType(2) the grey picture, red as its BT.601 luma
// (any type but 0 is grey, as in KMS); any int is accepted, a string for an int is 40001.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const kurentoClient = require('kurento-client');
const h = require('./helpers');
const { eventLog, recordThrough, rgbFrames } = require('./media');

const opencvexample = require('./opencvexample-client');

kurentoClient.register(opencvexample);
const { OpenCVExample } = opencvexample;
const OpenCVFilter = kurentoClient.register.abstracts['kurento.OpenCVFilter'];

let server;
let client;
let pipeline;
let dir;
let raw;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-opencv-'));
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  raw = await h.RawClient.open(server.url);
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (raw) raw.ws.close();
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: 60000 };
const call = (o, m, ...a) => h.callback(o, m, ...a);
const W = 320;
const H = 240;

// `seconds` of black with a grey band (45) at x 32..96 and a red band (220, 20, 20) at x
// 192..320, full height, 320x240, 30 fps, VP8. Through Canny (thresholds 125 and 125) the
// grey band's sides are edges (a gradient of 4 x 45 = 180) at x 31 and 95, the red band's
// side (its luma 80: 320) at x 191; with 300 as the high threshold only the red one is.
function bandsClip(file, seconds) {
  return new Promise((resolve, reject) => execFile('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `color=c=black:s=${W}x${H}:r=30`,
    '-f', 'lavfi', '-i', `color=c=0x2d2d2d:s=64x${H}:r=30`,
    '-f', 'lavfi', '-i', `color=c=0xdc1414:s=128x${H}:r=30`,
    '-filter_complex', '[0][1]overlay=x=32:y=0:shortest=1[a];[a][2]overlay=x=192:y=0:shortest=1', '-t', String(seconds),
    '-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30', '-f', 'webm', file],
  (e) => (e ? reject(e) : resolve(file))));
}

const px = (frame, x, y) => {
  const i = (y * W + x) * 3;
  return [frame[i], frame[i + 1], frame[i + 2]];
};
const lum = (p) => (p[0] + p[1] + p[2]) / 3;
// The brightest of row 120 within 3 columns of x.
const peak = (frame, x) => Math.max(...[-3, -2, -1, 0, 1, 2, 3].map((d) => lum(px(frame, x + d, 120))));
const near = (got, want, tol) => got.every((v, i) => Math.abs(v - want[i]) <= tol);

// What a frame of the recording shows: 'edges' (all three), 'strong' (the red band's only),
// 'grey' (the grey picture) or null.
function kind(f) {
  const dark = [10, 64, 140, 250, 300].every((x) => lum(px(f, x, 120)) < 50);
  const [weak1, weak2, strong] = [31, 95, 191].map((x) => peak(f, x));
  if (dark && weak1 > 110 && weak2 > 110 && strong > 110) return 'edges';
  if (dark && weak1 < 50 && weak2 < 50 && strong > 110) return 'strong';
  if (near(px(f, 250, 120), [80, 80, 80], 15) && near(px(f, 64, 120), [45, 45, 45], 15) && lum(px(f, 10, 120)) < 20) return 'grey';
  return null;
}

test('getInfo lists opencvexample; getKmd gives OpenCVExample extending OpenCVFilter with its two methods', T, async () => {
  const manager = await client.getServerManager();
  const info = await manager.getInfo();
  const m = info.modules.find((x) => x.name === 'opencvexample');
  assert.ok(m, JSON.stringify(info.modules.map((x) => x.name)));
  assert.equal(m.version, '7.3.0');
  assert.deepEqual(m.factories, ['OpenCVExample']);
  const kmd = JSON.parse(await manager.getKmd('opencvexample'));
  assert.equal(kmd.name, 'opencvexample');
  assert.equal(kmd.remoteClasses.length, 1);
  const [c] = kmd.remoteClasses;
  assert.equal(c.name, 'OpenCVExample');
  assert.equal(c.extends, 'OpenCVFilter');
  assert.deepEqual(c.constructor.params.map((p) => [p.name, p.type]), [['mediaPipeline', 'MediaPipeline']]);
  const methods = c.methods.map((x) => [x.name, x.params.map((p) => `${p.name}: ${p.type}`)]).sort();
  assert.deepEqual(methods, [['setEdgeThreshold', ['edgeValue: int']], ['setFilterType', ['filterType: int']]]);
  // The base is the built-in filters module's abstract class.
  const filters = JSON.parse(await manager.getKmd('filters'));
  const base = filters.remoteClasses.find((x) => x.name === 'OpenCVFilter');
  assert.equal(base.extends, 'Filter');
  assert.equal(base.abstract, true);
});

test('OpenCVExample is an OpenCVFilter to the client: describe, a client without the module, connections', T, async () => {
  const filter = await pipeline.create('OpenCVExample');
  const d = await raw.call('describe', { object: filter.id });
  assert.equal(d.result.type, 'OpenCVExample', JSON.stringify(d));
  assert.equal(d.result.qualifiedType, 'opencvexample.OpenCVExample', JSON.stringify(d));
  assert.deepEqual(d.result.hierarchy, ['kurento.OpenCVFilter', 'kurento.Filter', 'kurento.MediaElement', 'kurento.MediaObject']);
  // Clients that have not seen the element build it from the server's describe (a client's
  // own create answers from its cache).
  const fresh = async () => {
    const c = (await h.connectClient(server.url)).client;
    try {
      return [c, await c.getMediaobjectById(filter.id)];
    } catch (e) {
      await h.closeClient(c);
      throw e;
    }
  };
  // With the module's classes: its class, from describe's type.
  const [c1, seen] = await fresh();
  await h.closeClient(c1);
  assert.equal(seen.constructor, OpenCVExample);
  // Without them (a client that has only kurento-client): the first class of describe's
  // hierarchy it knows, OpenCVFilter, and the element works through it as a MediaElement.
  const { classes } = kurentoClient.register;
  const saved = ['OpenCVExample', 'opencvexample.OpenCVExample'].map((k) => [k, classes[k]]);
  for (const [k] of saved) delete classes[k];
  let c2;
  let bare;
  try {
    [c2, bare] = await fresh();
  } finally {
    for (const [k, v] of saved) classes[k] = v;
  }
  try {
    assert.equal(bare.constructor, OpenCVFilter);
    await bare.setName('edges');
    assert.equal(await filter.getName(), 'edges', 'set through the bare OpenCVFilter, read through the first client');
    const src = await pipeline.create('PassThrough');
    await src.connect(bare);
    const sources = await filter.getSourceConnections();
    const idOf = (x) => (typeof x === 'string' ? x : x && x.id);
    assert.ok(sources.some((c) => idOf(c.source) === src.id && c.type === 'VIDEO'), JSON.stringify(sources));
    await src.release();
  } finally {
    await h.closeClient(c2);
  }
  // Connected both ways, as any Filter.
  const [src, sink] = [await pipeline.create('PassThrough'), await pipeline.create('PassThrough')];
  await src.connect(filter);
  await filter.connect(sink);
  // The connections' ends arrive as ids (ElementConnectionData is a struct).
  const idOf = (x) => (typeof x === 'string' ? x : x && x.id);
  const sources = await filter.getSourceConnections();
  assert.deepEqual(sources.map((c) => [idOf(c.source), c.type]).sort(), [[src.id, 'AUDIO'], [src.id, 'DATA'], [src.id, 'VIDEO']]);
  const sinks = await filter.getSinkConnections();
  assert.deepEqual(sinks.map((c) => [idOf(c.sink), c.type]).sort(), [[sink.id, 'AUDIO'], [sink.id, 'DATA'], [sink.id, 'VIDEO']]);
  // The abstract base cannot be created.
  const e = await raw.call('create', { type: 'OpenCVFilter', constructorParams: { mediaPipeline: pipeline.id } });
  assert.ok(e.error, JSON.stringify(e));
  assert.match(e.error.message, /Factory 'OpenCVFilter' not found/);
  for (const o of [src, sink, filter]) await o.release();
});

test('OpenCVExample: edges by default, setEdgeThreshold(300) raises Canny\'s high threshold, setFilterType(2) shows grey', T, async () => {
  const clip = await bandsClip(path.join(dir, 'bands.webm'), 5);
  const filter = await pipeline.create('OpenCVExample');
  const log = await eventLog(filter, ['Error', 'MediaFlowInStateChanged', 'MediaFlowOutStateChanged']);
  const file = path.join(dir, 'out.webm');
  await recordThrough(pipeline, filter, clip, file, async () => {
    await h.sleep(1300);
    await call(filter, 'setEdgeThreshold', 300);
    await h.sleep(1300);
    await call(filter, 'setFilterType', 2);
  });
  const frames = rgbFrames(file, W, H);
  assert.ok(frames.length >= 90, `${frames.length} frames`);
  const kinds = frames.map(kind);
  const runs = [];
  for (const k of kinds) {
    if (!runs.length || runs[runs.length - 1][0] !== k) runs.push([k, 0]);
    runs[runs.length - 1][1] += 1;
  }
  const text = runs.map(([k, n]) => `${k}x${n}`).join(' ');
  console.log(`opencvexample: ${text}; first frame: edges ${[31, 95, 191].map((x) => peak(frames[0], x))}, ` +
    `grey-phase pixels ${JSON.stringify(px(frames[frames.length - 1], 250, 120))} ${JSON.stringify(px(frames[frames.length - 1], 64, 120))}`);
  // In order, each for a while; at most 3 frames of a switch in between.
  const seen = runs.filter(([k, n]) => k && n >= 10).map(([k]) => k);
  assert.deepEqual(seen, ['edges', 'strong', 'grey'], text);
  assert.ok(kinds.filter((k) => !k).length <= 3, text);
  assert.deepEqual(log.of('Error'), []);
  for (const t of ['MediaFlowInStateChanged', 'MediaFlowOutStateChanged']) {
    assert.ok(log.of(t).some((e) => e.data.state === 'FLOWING'), `${t} FLOWING: ${JSON.stringify(log.events)}`);
  }
  await filter.release();
});

test('OpenCVExample: any int is accepted, as KMS accepts it; a string is refused with 40001', T, async () => {
  const filter = await pipeline.create('OpenCVExample');
  for (const [m, v] of [['setFilterType', 2], ['setFilterType', -1], ['setEdgeThreshold', 256], ['setEdgeThreshold', -1],
    ['setEdgeThreshold', 2147483647]]) {
    const e = await call(filter, m, v).then(() => null, (err) => err);
    assert.equal(e, null, `${m}(${v}) accepted: ${e && e.message}`);
  }
  const e = await call(filter, 'setFilterType', 'edges').then(() => null, (err) => err);
  assert.ok(e, 'a string refused');
  assert.equal(e.code, 40001, e.message);
  await filter.release();
});
