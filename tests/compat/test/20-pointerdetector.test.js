'use strict';
// PointerDetectorFilter, Kurento's pointerdetector module as a WebAssembly module
// (crates/fluo-module-pointerdetector, built by `make wasm-modules`, loaded with
// --modules-dir; docs/modules.md), through the official client with Kurento's JS module for
// it (kurento-module-pointerdetector 6.18.0, the last on npm): getInfo lists the module;
// a clip of a red square on black, first still in the calibration region, then moving right
// through one window and past another it never touches, goes through the filter:
// trackColorFromCalibrationRegion takes its colour, and the filter raises WindowIn then
// WindowOut for the window it crosses, none for the other; bad windows are refused (40107).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const kurentoClient = require('kurento-client');
const h = require('./helpers');
const { fileUri, eventLog } = require('./media');

// The client checks at connect that the server has every module it registered (getInfo).
kurentoClient.register('kurento-module-pointerdetector');
const { WindowParam, PointerDetectorWindowMediaParam } =
  require('kurento-module-pointerdetector').complexTypes;

const WASM = path.resolve(__dirname, '../../../target/wasm32-unknown-unknown/wasm-module/fluo_module_pointerdetector.wasm');

let server;
let client;
let pipeline;
let dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-pointer-'));
  assert.ok(fs.existsSync(WASM), `${WASM} is missing: build it with make wasm-modules`);
  const modules = path.join(dir, 'modules');
  fs.mkdirSync(modules);
  fs.copyFileSync(WASM, path.join(modules, 'pointerdetector.wasm'));
  server = await h.startServer(['--modules-dir', modules]);
  client = (await h.connectClient(server.url)).client;
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: 90000 };
const call = (o, m, ...a) => h.callback(o, m, ...a);

// 9 s, 320x240, 30 fps, VP8: black, a red 30x30 square at (10, 100) for 4 s, then moving
// right 80 px a second (its centre crosses x 150..210 between about 5.6 and 6.3 s).
function pointerClip(file) {
  return new Promise((resolve, reject) => execFile('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', 'color=c=black:s=320x240:r=30',
    '-f', 'lavfi', '-i', 'color=c=0xe01010:s=30x30:r=30',
    '-filter_complex', "[0][1]overlay=x='if(lt(t,4),10,10+(t-4)*80)':y=100:shortest=1", '-t', '9',
    '-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30', '-f', 'webm', file],
  (e) => (e ? reject(e) : resolve(file))));
}

const region = () => WindowParam({ topRightCornerX: 10, topRightCornerY: 100, width: 30, height: 30 });
const win = (id, x, y) => PointerDetectorWindowMediaParam({ id, upperRightX: x, upperRightY: y, width: 60, height: 80 });

test('PointerDetectorFilter: getInfo lists pointerdetector with its factory', T, async () => {
  const info = await client.getServerManager().then((m) => m.getInfo());
  const m = info.modules.find((x) => x.name === 'pointerdetector');
  assert.ok(m, `pointerdetector in getInfo: ${JSON.stringify(info.modules.map((x) => x.name))}`);
  assert.deepEqual(m.factories, ['PointerDetectorFilter']);
});

test('PointerDetectorFilter: the pointer crossing a window raises WindowIn then WindowOut, in order', T, async () => {
  const clip = await pointerClip(path.join(dir, 'pointer.webm'));
  const filter = await pipeline.create('PointerDetectorFilter', { calibrationRegion: region(), windows: [win('crossed', 150, 80)] });
  await call(filter, 'addWindow', win('above', 150, 0));
  const log = await eventLog(filter, ['WindowIn', 'WindowOut', 'Error']);
  const p = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
  const ends = await eventLog(p, ['EndOfStream']);
  await p.connect(filter);
  await p.play();
  await h.waitFor(async () => (await filter.isMediaFlowingIn('VIDEO')) || null, 10000, 'video into the filter');
  await h.sleep(500);
  await call(filter, 'trackColorFromCalibrationRegion');
  await ends.wait('EndOfStream', 30000);
  await h.sleep(500);
  const seen = log.events.map((e) => `${e.type}:${e.data.windowId}`);
  assert.deepEqual(seen, ['WindowIn:crossed', 'WindowOut:crossed'], JSON.stringify(log.events));
  const [inn, out] = log.events;
  assert.ok(out.at > inn.at, 'WindowOut after WindowIn');
  await p.release();
  await filter.release();
});

test('PointerDetectorFilter: a window without an id, a taken id or an unknown one to remove is refused with 40107', T, async () => {
  const filter = await pipeline.create('PointerDetectorFilter', { calibrationRegion: region() });
  await call(filter, 'addWindow', win('a', 0, 0));
  for (const [m, arg] of [['addWindow', win('a', 10, 10)], ['addWindow', win('', 10, 10)], ['removeWindow', 'nope']]) {
    const e = await call(filter, m, arg).then(() => null, (err) => err);
    assert.ok(e, `${m} refused`);
    assert.equal(e.code, 40107, `${m}: ${e.message}`);
  }
  await call(filter, 'removeWindow', 'a');
  await call(filter, 'clearWindows');
  await filter.release();
});
