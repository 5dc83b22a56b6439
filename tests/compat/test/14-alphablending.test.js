'use strict';
// AlphaBlending (a Composite whose layout is a blend) through the official client: its
// methods' bad input (a port of another hub, values out of 0..1), and real media: three
// players of one colour each, red the master (its 640x360 fills the frame, the output is its
// size), blue and green at rectangles that overlap, the higher z-order on top, swapped by a
// second setPortProperties; every port's output is the blended frame; audio is mixed as in
// the Composite (red's port hears blue's tone, not its own).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { probe, fileUri, eventLog } = require('./media');
const tones = require('./tones');

const { run, toneClip, frameSize, lastAudio, toneLevel } = tones;

let server;
let client;
let pipeline;
let dir;
const clip = {};

// The master's size: the output frame's.
const W = 640;
const H = 360;
const lastFrame = (file) => tones.lastFrame(file, W, H);
const colourAt = (frame, x, y) => tones.colourAt(frame, W, x, y);

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-alpha-'));
  clip.red = await toneClip(path.join(dir, 'red.webm'), 'red', `${W}x${H}`, 440, 40);
  clip.blue = await toneClip(path.join(dir, 'blue.webm'), 'blue', '320x240', 1000, 40);
  clip.green = await toneClip(path.join(dir, 'green.webm'), 'green', '240x320', 2500, 40);
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
  if (dir && !process.env.FLUO_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: h.TEST_TIMEOUT };
const TM = { timeout: 120000 };

test('AlphaBlending bad input: foreign ports, values out of 0..1; nothing else disturbed', T, async () => {
  const hub = await pipeline.create('AlphaBlending');
  assert.equal(hub.constructor.name, 'AlphaBlending');
  const a = await hub.createHubPort();
  const b = await hub.createHubPort();
  const other = await pipeline.create('AlphaBlending');
  const foreign = await other.createHubPort();
  const composite = await pipeline.create('Composite');
  const cport = await composite.createHubPort();
  // KMS takes a port's properties before any master: so does Fluo.
  await hub.setPortProperties(0.1, 0.1, 2, 0.5, 0.5, b);
  for (const port of [foreign, cport]) {
    const e1 = await h.rejectsWithCode(h.callback(hub, 'setMaster', port, 1), 40004, assert);
    assert.match(e1.message, /another hub/);
    await h.rejectsWithCode(h.callback(hub, 'setPortProperties', 0, 0, 1, 0.5, 0.5, port), 40004, assert);
  }
  const bad = [[-0.1, 0, 0.5, 0.5], [0, 1.5, 0.5, 0.5], [0, 0, 2, 0.5], [0, 0, 0.5, -1]];
  for (const [x, y, w, hh] of bad) {
    const e = await h.rejectsWithCode(h.callback(hub, 'setPortProperties', x, y, 1, w, hh, b), 40107, assert);
    assert.match(e.message, /must be within 0\.\.1/);
    assert.ok(!/0x[0-9a-f]{6,}/i.test(e.message), e.message);
  }
  await hub.setMaster(a, 3);
  await hub.setPortProperties(0, 0, 1, 1, 1, b);
  assert.equal(await h.callback(b, 'getName'), b.id);
  await a.release();
  await h.rejectsWithCode(h.callback(hub, 'setMaster', a, 1), 40101, assert);
  for (const x of [hub, other, composite]) await x.release();
  await h.rejectsWithCode(h.callback(b, 'getName'), 40101, assert);
});

// Records `port`'s output for 3 s (from a flowing state) and returns the file.
async function record(port, name) {
  const file = path.join(dir, `${name}.webm`);
  const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
  const log = await eventLog(rec, ['MediaFlowInStateChanged']);
  await port.connect(rec);
  await log.wait('MediaFlowInStateChanged', 15000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  await rec.record();
  await h.sleep(4000);
  await rec.stopAndWait();
  await rec.release();
  return file;
}

async function blend(label) {
  const hub = await pipeline.create('AlphaBlending');
  const colours = ['red', 'blue', 'green'];
  const ports = {};
  const players = {};
  for (const c of colours) {
    ports[c] = await hub.createHubPort();
    players[c] = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip[c]) });
    await players[c].connect(ports[c]);
  }
  await hub.setMaster(ports.red, 1);
  // blue at (320, 180) 160x90, green at (400, 225) 160x90: they overlap on 400..480 x 225..270.
  await hub.setPortProperties(0.5, 0.5, 2, 0.25, 0.25, ports.blue);
  await hub.setPortProperties(0.625, 0.625, 3, 0.25, 0.25, ports.green);
  for (const c of colours) await players[c].play();
  for (const c of colours) {
    await h.waitFor(async () => (await h.callback(ports[c], 'isMediaFlowingIn', 'VIDEO')) === true, 15000, `${c} flowing in`);
  }
  // The master's size is known once its first frame is decoded.
  await h.sleep(1000);

  const file = await record(ports.red, `blend-${label}`);
  const info = await probe(file);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  assert.equal(await frameSize(file), `${W}x${H}`, 'the output is the master\'s size');
  const f = await lastFrame(file);
  assert.equal(f.length, W * H * 3);
  const at = (pts) => pts.map(([x, y]) => colourAt(f, x, y));
  const expected = {
    'master (corners and centre-left)': [[[20, 20], [620, 20], [20, 340], [620, 340], [160, 180]], 'red'],
    'blue only': [[[330, 190], [470, 190], [330, 260], [390, 260]], 'blue'],
    'green only': [[[550, 240], [410, 305], [550, 305], [490, 230]], 'green'],
    'overlap (green has z 3)': [[[410, 235], [470, 260], [440, 250]], 'green'],
    'master just outside the rectangles': [[[310, 200], [570, 260], [440, 320], [400, 170]], 'red'],
  };
  for (const [what, [pts, colour]] of Object.entries(expected)) {
    assert.deepEqual(at(pts), pts.map(() => colour), `${what}: ${JSON.stringify(at(pts))}`);
  }
  // Audio as the Composite's: red's port has the others' tones, not its own.
  const samples = await lastAudio(file, 3);
  const level = { own: toneLevel(samples, 440), blue: toneLevel(samples, 1000), green: toneLevel(samples, 2500) };
  assert.ok(level.blue > 0.2 && level.green > 0.2, JSON.stringify(level));
  assert.ok(level.own < level.blue / 30, JSON.stringify(level));
  console.log(`alphablending ${label}: tone levels ${JSON.stringify(level)}`);

  // Blue above green now; blue's own port sends the same blended frame.
  await hub.setPortProperties(0.5, 0.5, 4, 0.25, 0.25, ports.blue);
  const file2 = await record(ports.blue, `blend2-${label}`);
  assert.equal(await frameSize(file2), `${W}x${H}`);
  const f2 = await lastFrame(file2);
  const at2 = (pts) => pts.map(([x, y]) => colourAt(f2, x, y));
  assert.deepEqual(at2([[410, 235], [470, 260], [440, 250]]), ['blue', 'blue', 'blue'], 'overlap: blue has z 4');
  assert.deepEqual(at2([[550, 305], [20, 20], [330, 190]]), ['green', 'red', 'blue']);
  for (const x of [...Object.values(players), hub]) await x.release();
}

test('real media through media workers: the master fills the frame, rectangles, z-order', TM, async () => {
  await blend('workers');
});

test('AlphaBlending, real media with --workers 0: the same, the pipeline in the server process', TM, async () => {
  const local = await h.startServer(['--workers', '0']);
  const c = (await h.connectClient(local.url)).client;
  const saved = pipeline;
  try {
    pipeline = await c.create('MediaPipeline');
    await blend('local');
  } finally {
    await pipeline.release().catch(() => {});
    pipeline = saved;
    await h.closeClient(c);
    await local.stop();
  }
});
