'use strict';
// ChromaFilter, a module compiled into Fluo (crates/fluo-module-chroma, docs/modules.md),
// through the official client with Kurento's own JS module for it (kurento-module-chroma
// 7.3.0): getInfo lists the module, getKmd answers its description (compared with the kmd
// the npm package ships), describe names the type; a clip of a green field with a white
// square moving across it goes through the filter into a recorder, and the decoded frames
// show the background image where the field was and the square where it is; bad URIs are
// refused with 40107, an image that cannot be read raises an Error event.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const kurentoClient = require('kurento-client');
const h = require('./helpers');
const { fileUri, eventLog, recordThrough, rgbFrames } = require('./media');
const { solidImage } = require('./face');

// The client checks at connect that the server has every module it registered (getInfo).
kurentoClient.register('kurento-module-chroma');
const { WindowParam } = require('kurento-module-chroma').complexTypes;

let server;
let client;
let pipeline;
let dir;
let raw;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-chroma-'));
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
const W = 320;
const H = 240;
const SQUARE = 60;
const FIELD = [0, 200, 0];
const BLUE = [0, 0, 255];
const WHITE = [255, 255, 255];
// With a callback: without one, the generated client code (kurento-module-chroma's as
// kurento-client's) logs an error and resolves the promise.
const call = (o, m, ...a) => h.callback(o, m, ...a);
const window = () => WindowParam({ topRightCornerX: 0, topRightCornerY: 0, width: 40, height: 40 });

// `seconds` of a green field with a white SQUARE x SQUARE square moving right (60 px a
// second from x = 20, at y 90..150), 320x240, 30 fps, VP8.
function fieldClip(file, seconds) {
  return new Promise((resolve, reject) => execFile('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', `color=c=0x00c800:s=${W}x${H}:r=30`,
    '-f', 'lavfi', '-i', `color=c=white:s=${SQUARE}x${SQUARE}:r=30`,
    '-filter_complex', "[0][1]overlay=x='20+t*60':y=90:shortest=1", '-t', String(seconds),
    '-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30', '-f', 'webm', file],
  (e) => (e ? reject(e) : resolve(file))));
}

const px = (frame, x, y) => {
  const i = (y * W + x) * 3;
  return [frame[i], frame[i + 1], frame[i + 2]];
};
const near = (got, want, tol = 50) => got.every((v, i) => Math.abs(v - want[i]) <= tol);

// The white run on row 120 of a frame: [first x, length] (the square, wherever it is).
function squareOnRow(frame) {
  let first = -1;
  let n = 0;
  for (let x = 0; x < W; x++) {
    if (near(px(frame, x, 120), WHITE, 40)) {
      if (first < 0) first = x;
      n++;
    }
  }
  return [first, n];
}

test('getInfo lists the chroma module; getKmd answers its description as the npm module\'s kmd has it', T, async () => {
  const info = await client.getServerManager().then((m) => m.getInfo());
  const chroma = info.modules.find((m) => m.name === 'chroma');
  assert.ok(chroma, JSON.stringify(info.modules.map((m) => m.name)));
  assert.equal(chroma.version, '7.3.0');
  assert.deepEqual(chroma.factories, ['ChromaFilter']);
  const manager = await client.getServerManager();
  const kmd = JSON.parse(await manager.getKmd('chroma'));
  const ref = JSON.parse(fs.readFileSync(require.resolve('kurento-module-chroma/src/chroma.kmd.json'), 'utf8'));
  const facts = (v) => JSON.parse(JSON.stringify(v, (k, x) => (k === 'doc' ? undefined : x)));
  assert.equal(kmd.name, ref.name);
  assert.equal(kmd.version, ref.version);
  const cls = (k) => k.remoteClasses.map((c) => ({
    name: c.name,
    extends: c.extends,
    constructor: facts(c.constructor),
    methods: facts(c.methods).sort((a, b) => a.name.localeCompare(b.name)),
    events: c.events || [],
  }));
  assert.deepEqual(cls(kmd), cls(ref));
  const types = (k) => facts(k.complexTypes).map((t) => ({ name: t.name, typeFormat: t.typeFormat, properties: t.properties }));
  assert.deepEqual(types(kmd), types(ref));
  await assert.rejects(call(manager, 'getKmd', 'chromaa'), (e) => e.code === 40500);
});

test('ChromaFilter: created with its window, described as the chroma module\'s type', T, async () => {
  const filter = await pipeline.create('ChromaFilter', { window: window() });
  assert.equal(filter.constructor.name, 'ChromaFilter');
  const again = await client.getMediaobjectById(filter.id);
  assert.equal(again.constructor.name, 'ChromaFilter');
  const d = await raw.call('describe', { object: filter.id });
  assert.equal(d.result.qualifiedType, 'chroma.ChromaFilter', JSON.stringify(d));
  assert.deepEqual(d.result.hierarchy, ['kurento.Filter', 'kurento.MediaElement', 'kurento.MediaObject']);
  // A window without a size is refused.
  await assert.rejects(pipeline.create('ChromaFilter',
    { window: WindowParam({ topRightCornerX: 0, topRightCornerY: 0, width: 0, height: 10 }) }),
  (e) => e.code === 40107 && /ChromaFilter: the window/.test(e.message));
  await filter.release();
});

// Plays `clip` through `filter` into a recording and returns its decoded frames; `during`
// runs once media flows into the recorder.
async function run(filter, clip, name, during) {
  const file = path.join(dir, name);
  await recordThrough(pipeline, filter, clip, file, during);
  return rgbFrames(file, W, H);
}

test('ChromaFilter: the green field shows the background image, the moving square stays; unsetBackground brings the field back', T, async () => {
  const clip = await fieldClip(path.join(dir, 'field.webm'), 3);
  const bg = await solidImage(path.join(dir, 'blue.png'), '0000ff', [32, 24]);
  const filter = await pipeline.create('ChromaFilter', { window: window() });
  const errors = await eventLog(filter, ['Error']);
  await filter.setBackground(fileUri(bg));
  const got = await run(filter, clip, 'out.webm', async () => {
    await h.sleep(1500);
    await filter.unsetBackground();
  });
  assert.ok(got.length >= 60, `${got.length} frames`);
  const early = got.slice(5, 30);
  const last = got.slice(-8);
  for (const f of early) {
    for (const [x, y] of [[10, 10], [300, 20], [160, 220], [5, 120]]) {
      assert.ok(near(px(f, x, y), BLUE), `the background where the field was, at ${x},${y}: ${px(f, x, y)}`);
    }
    const [, n] = squareOnRow(f);
    assert.ok(n >= SQUARE - 12 && n <= SQUARE + 12, `the square kept on row 120: ${n} white pixels`);
  }
  const [x0] = squareOnRow(early[0]);
  const [x1] = squareOnRow(early[early.length - 1]);
  assert.ok(x1 - x0 >= 25, `the square moves: from x ${x0} to ${x1}`);
  for (const f of last) {
    assert.ok(near(px(f, 10, 10), FIELD), `unset: the field again: ${px(f, 10, 10)}`);
    const [, n] = squareOnRow(f);
    assert.ok(n >= SQUARE - 12, `the square on the field: ${n}`);
  }
  assert.deepEqual(errors.of('Error'), []);
  await filter.release();
});

test('ChromaFilter: the constructor\'s backgroundImage is the background from the start', T, async () => {
  const clip = await fieldClip(path.join(dir, 'short.webm'), 2);
  const bg = await solidImage(path.join(dir, 'red.png'), 'ff0000', [16, 16]);
  const filter = await pipeline.create('ChromaFilter', { window: window(), backgroundImage: fileUri(bg) });
  const errors = await eventLog(filter, ['Error']);
  const got = await run(filter, clip, 'ctor.webm');
  assert.ok(got.length >= 40, `${got.length} frames`);
  for (const f of got.slice(5)) {
    assert.ok(near(px(f, 300, 20), [255, 0, 0]), `the constructor's background: ${px(f, 300, 20)}`);
    const [, n] = squareOnRow(f);
    assert.ok(n >= SQUARE - 12 && n <= SQUARE + 12, `the square kept: ${n}`);
  }
  assert.deepEqual(errors.of('Error'), []);
  // A constructor's URI is checked as setBackground's.
  await assert.rejects(pipeline.create('ChromaFilter', { window: window(), backgroundImage: 'ftp://127.0.0.1/x.png' }),
    (e) => e.code === 40107 && /^ChromaFilter: /.test(e.message));
  await filter.release();
});

test('ChromaFilter: bad URIs are refused with 40107; an image that cannot be read raises an Error event', T, async () => {
  const filter = await pipeline.create('ChromaFilter', { window: window() });
  const errors = await eventLog(filter, ['Error']);
  for (const uri of ['not a uri', 'ftp://127.0.0.1/x.png', 'file://relative/x.png']) {
    await assert.rejects(call(filter, 'setBackground', uri), (e) => {
      assert.equal(e.code, 40107, `${uri}: ${e.message}`);
      assert.match(e.message, /^ChromaFilter: /);
      return true;
    });
  }
  await filter.setBackground(fileUri(path.join(dir, 'nothing-here.png')));
  const ev = await errors.wait('Error', 15000);
  assert.match(ev.data.description, /^ChromaFilter: the image .*nothing-here\.png cannot be used: the file does not exist/);
  await filter.release();
});
