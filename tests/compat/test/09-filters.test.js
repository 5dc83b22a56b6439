'use strict';
// GStreamerFilter through the official client: a player's clip goes through a client's
// command into a recorder and comes out changed (checked on the decoded pixels); getCommand,
// setElementProperty and its errors; filterType; commands with sources or sinks refused.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { makeClip, probe, fileUri, eventLog } = require('./media');

let server;
let client;
let pipeline;
let dir;
let clip;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-filter-'));
  clip = await makeClip(path.join(dir, 'clip.webm'), { seconds: 3 });
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: 40000 };

// Mean distance of the decoded chroma samples from grey (128): 0 for black and white.
function chroma(file) {
  const raw = execFileSync('ffmpeg', ['-loglevel', 'error', '-i', file, '-an', '-vf', 'scale=64:48',
    '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-'], { maxBuffer: 64 << 20 });
  const frame = 64 * 48 * 3 / 2;
  let sum = 0;
  let n = 0;
  for (let f = 0; f + frame <= raw.length; f += frame) {
    for (let i = f + 64 * 48; i < f + frame; i++) { sum += Math.abs(raw[i] - 128); n++; }
  }
  return { frames: raw.length / frame, mean: n ? sum / n : NaN };
}

test('GStreamerFilter: a player -> filter -> recorder chain applies the command to the pixels', T, async () => {
  const source = chroma(clip);
  assert.ok(source.mean > 20, `the test pattern is colourful: ${source.mean}`);
  const command = 'videobalance saturation=0.0';
  const filter = await pipeline.create('GStreamerFilter', { command });
  assert.equal(filter.constructor.name, 'GStreamerFilter');
  assert.ok(filter.id.endsWith('_kurento.GStreamerFilter'), filter.id);
  assert.equal(await filter.getCommand(), command);
  const file = path.join(dir, 'grey.webm');
  const p = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
  const log = await eventLog(p, ['EndOfStream']);
  const flow = await eventLog(filter, ['MediaFlowInStateChanged', 'MediaFlowOutStateChanged']);
  await p.connect(filter);
  await filter.connect(r);
  await r.record();
  await p.play();
  await flow.wait('MediaFlowOutStateChanged', 5000, (d) => d.state === 'FLOWING' && d.mediaType === 'VIDEO');
  assert.ok(flow.of('MediaFlowInStateChanged').some((e) => e.data.state === 'FLOWING' && e.data.mediaType === 'VIDEO'));
  assert.equal(await filter.isMediaFlowingIn('VIDEO'), true);
  await log.wait('EndOfStream', 10000);
  await r.stopAndWait();
  const info = await probe(file);
  // filterType AUTODETECT finds video: the audio passes through untouched.
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  const got = chroma(file);
  assert.ok(got.frames >= 45, `${got.frames} frames of a 3 s clip`);
  assert.ok(got.mean < 2, `saturation 0 gives grey: chroma ${got.mean} (source ${source.mean})`);
  for (const o of [p, r, filter]) await o.release();
});

// kurento-client's generated setElementProperty only logs an error when no callback is
// given (its promise resolves either way), so the answers are read through the callback.
const setProp = (f, name, value) => new Promise((resolve) => f.setElementProperty(name, value, (e) => resolve(e || undefined)));

test('GStreamerFilter: setElementProperty takes GStreamer values and refuses wrong ones with 40107', T, async () => {
  const filter = await pipeline.create('GStreamerFilter', { command: 'videoflip method=none', filterType: 'VIDEO' });
  assert.equal(await setProp(filter, 'method', 'horizontal-flip'), undefined);
  assert.equal(await setProp(filter, 'method', '4'), undefined, 'an enum by number');
  for (const [name, value] of [['method', 'sideways'], ['nosuchproperty', '1']]) {
    const e = await setProp(filter, name, value);
    assert.ok(e, `${name}=${value} refused`);
    assert.equal(e.code, 40107, `${name}=${value}: ${e.message}`);
  }
  const f = await pipeline.create('GStreamerFilter', { command: 'videobalance' });
  for (const value of ['2.5', '-5', 'bright']) {
    const e = await setProp(f, 'brightness', value); // a double in [-1, 1]
    assert.equal(e && e.code, 40107, `brightness=${value}: ${e && e.message}`);
  }
  assert.equal(await setProp(f, 'brightness', '0.5'), undefined);
  for (const o of [f, filter]) await o.release();
});

test('GStreamerFilter: commands that read or write files or reach the network are refused with 40107', T, async () => {
  const before = (await pipeline.getChildren()).length;
  for (const command of ['filesink location=/tmp/fluo-compat-x', 'filesrc location=/etc/passwd ! decodebin',
    'videoflip ! udpsink host=127.0.0.1 port=9', 'no-such-element', '']) {
    await assert.rejects(pipeline.create('GStreamerFilter', { command }), (e) => {
      assert.equal(e.code, 40107, `${command}: ${e.message}`);
      assert.match(e.message, /GStreamerFilter/);
      return true;
    });
  }
  assert.equal((await pipeline.getChildren()).length, before, 'nothing was created');
  assert.ok(!fs.existsSync('/tmp/fluo-compat-x'));
  // An audio command, by filterType and by detection.
  for (const filterType of ['AUDIO', 'AUTODETECT']) {
    const f = await pipeline.create('GStreamerFilter', { command: 'volume volume=0.5', filterType });
    await f.release();
  }
});
