'use strict';
// Mixer (a hub that routes video between chosen ports and mixes chosen ports' audio) through
// the official client: creation and release, KMS's answers to bad input (a port of another
// hub or pipeline, a released port, a port routed to itself, DATA, disconnect of VIDEO or of
// a route that is not there), and real media: three players of one colour and one tone each
// into ports R, B and G, a fourth port S recorded: S shows the colour of the source its
// connect(VIDEO) chose and holds the tones its connect(AUDIO) chose, not the others; after a
// switch of its video source and a disconnect of one audio source, the recording (made across
// the switch) decodes without an error and shows and holds the new choice. The media test
// runs with the default media workers and again with --workers 0.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { probe, fileUri, eventLog } = require('./media');
const { run, toneClip, frameSize, lastFrame, colourAt, lastAudio, windowLevels } = require('./tones');

let server;
let client;
let pipeline;
let dir;
const clip = {};
const TONE = { red: 440, blue: 1000, green: 2500 };
const W = 320;
const H = 240;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-mixer-'));
  for (const c of Object.keys(TONE)) clip[c] = await toneClip(path.join(dir, `${c}.webm`), c, `${W}x${H}`, TONE[c], 40);
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

test('Mixer and its HubPorts are created; release cascades', T, async () => {
  const hub = await pipeline.create('Mixer');
  assert.equal(hub.constructor.name, 'Mixer');
  const a = await hub.createHubPort();
  const b = await hub.createHubPort();
  assert.equal(a.constructor.name, 'HubPort');
  assert.deepEqual((await hub.getChildren()).map((c) => c.id).sort(), [a.id, b.id].sort());
  await h.callback(hub, 'connect', 'VIDEO', a, b);
  await h.callback(hub, 'connect', 'AUDIO', a, b);
  await h.callback(hub, 'disconnect', 'AUDIO', a, b);
  await b.release();
  assert.deepEqual((await hub.getChildren()).map((c) => c.id), [a.id]);
  await hub.release();
  for (const x of [hub, a, b]) await h.rejectsWithCode(h.callback(x, 'getName'), 40101, assert);
});

test('bad input: foreign and released ports, a port to itself, DATA, disconnects KMS refuses', T, async () => {
  const hub = await pipeline.create('Mixer');
  const a = await hub.createHubPort();
  const b = await hub.createHubPort();
  const other = await pipeline.create('Mixer');
  const o = await other.createHubPort();
  const pl = await client.create('MediaPipeline');
  const far = await (await pl.create('Mixer')).createHubPort();
  const clean = (err) => assert.ok(!/0x[0-9a-f]{6,}/i.test(err.message), err.message);
  // A port of another hub, of another pipeline: CONNECT_ERROR, either side.
  for (const [src, sink] of [[o, b], [a, o], [far, b], [a, far]]) {
    clean(await h.rejectsWithCode(h.callback(hub, 'connect', 'AUDIO', src, sink), 40004, assert));
    clean(await h.rejectsWithCode(h.callback(hub, 'connect', 'VIDEO', src, sink), 40004, assert));
  }
  // A port routed to itself: nobody hears or sees themselves through a Mixer.
  for (const m of ['AUDIO', 'VIDEO']) await h.rejectsWithCode(h.callback(hub, 'connect', m, a, a), 40004, assert);
  // DATA is no media a Mixer routes; KMS disconnects no VIDEO (40005 UNSUPPORTED_MEDIA_TYPE).
  let err = await h.rejectsWithCode(h.callback(hub, 'connect', 'DATA', a, b), 40005, assert);
  assert.equal(err.data && err.data.type, 'UNSUPPORTED_MEDIA_TYPE');
  await h.rejectsWithCode(h.callback(hub, 'disconnect', 'DATA', a, b), 40005, assert);
  await h.callback(hub, 'connect', 'VIDEO', a, b);
  await h.rejectsWithCode(h.callback(hub, 'disconnect', 'VIDEO', a, b), 40005, assert);
  // Disconnecting audio that is not connected: CONNECT_ERROR, as KMS.
  err = await h.rejectsWithCode(h.callback(hub, 'disconnect', 'AUDIO', a, b), 40004, assert);
  clean(err);
  await h.callback(hub, 'connect', 'AUDIO', a, b);
  await h.callback(hub, 'connect', 'AUDIO', a, b);
  await h.callback(hub, 'disconnect', 'AUDIO', a, b);
  await h.rejectsWithCode(h.callback(hub, 'disconnect', 'AUDIO', a, b), 40004, assert);
  // A released port: 40101; its routes went with it.
  await h.callback(hub, 'connect', 'AUDIO', b, a);
  await b.release();
  await h.rejectsWithCode(h.callback(hub, 'connect', 'AUDIO', a, b), 40101, assert);
  await h.rejectsWithCode(h.callback(hub, 'disconnect', 'AUDIO', b, a), 40101, assert);
  // Nothing else was disturbed: the hub and its other port answer.
  assert.deepEqual((await hub.getChildren()).map((c) => c.id), [a.id]);
  for (const x of [hub, other, pl]) await x.release();
});

async function mix(label) {
  const hub = await pipeline.create('Mixer');
  const colours = Object.keys(TONE);
  const ports = {};
  const players = {};
  for (const c of colours) {
    ports[c] = await hub.createHubPort();
    players[c] = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip[c]) });
    await players[c].connect(ports[c]);
  }
  const s = await hub.createHubPort();
  await h.callback(hub, 'connect', 'VIDEO', ports.red, s);
  await h.callback(hub, 'connect', 'AUDIO', ports.blue, s);
  await h.callback(hub, 'connect', 'AUDIO', ports.green, s);
  for (const c of colours) await players[c].play();
  for (const c of colours) {
    await h.waitFor(async () => (await h.callback(ports[c], 'isMediaFlowingIn', 'AUDIO')) === true, 15000, `${c} flowing in`);
  }

  const recorder = async (name) => {
    const file = path.join(dir, `${name}-${label}.webm`);
    const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
    const log = await eventLog(rec, ['MediaFlowInStateChanged']);
    await s.connect(rec);
    await log.wait('MediaFlowInStateChanged', 15000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
    await rec.record();
    return { file, rec };
  };
  // Each tone's level in 250 ms windows (tones.js): median and maximum.
  const levels = (samples) => windowLevels(samples, TONE);

  // S: red's video, blue's and green's audio (each at half its level), not red's.
  const one = await recorder('first');
  await h.sleep(4000);
  await one.rec.stopAndWait();
  await one.rec.release();
  assert.deepEqual((await probe(one.file)).streams, ['audio:opus', 'video:vp8']);
  assert.equal(await frameSize(one.file), `${W}x${H}`);
  let frame = await lastFrame(one.file, W, H);
  const spots = [[W / 2, H / 2], [10, 10], [W - 10, H - 10]];
  assert.deepEqual(spots.map(([x, y]) => colourAt(frame, W, x, y)), ['red', 'red', 'red']);
  let level = levels(await lastAudio(one.file, 3));
  for (const c of ['blue', 'green']) {
    assert.ok(level[c].median > 0.3 && level[c].max < 0.5, `${c}: ${JSON.stringify(level)}`);
  }
  assert.ok(level.red.max < 0.01, `red is not routed: ${JSON.stringify(level)}`);
  console.log(`mixer ${label}: first ${JSON.stringify(level)}`);

  // Refused calls change nothing (checked by the second recording's content).
  await h.rejectsWithCode(h.callback(hub, 'disconnect', 'AUDIO', ports.red, s), 40004, assert);
  await h.rejectsWithCode(h.callback(hub, 'disconnect', 'VIDEO', ports.red, s), 40005, assert);
  await h.rejectsWithCode(h.callback(hub, 'connect', 'AUDIO', s, s), 40004, assert);

  // Recorded across a switch: blue's video, blue's audio alone (at its full level).
  const two = await recorder('switch');
  await h.sleep(1500);
  await h.callback(hub, 'connect', 'VIDEO', ports.blue, s);
  await h.callback(hub, 'disconnect', 'AUDIO', ports.green, s);
  await h.sleep(4500);
  await two.rec.stopAndWait();
  // The video decodes without an error across the switch. (The null muxer's complaints about
  // the recording's timestamps are the recorder's, not a broken frame: logged, not judged.)
  const { stderr } = await run('ffmpeg', ['-v', 'error', '-nostdin', '-i', two.file, '-an', '-f', 'null', '-']);
  const muxer = /non monotonically increasing dts|Last message repeated/;
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  if (lines.some((l) => muxer.test(l))) console.log(`mixer ${label}: ffmpeg says ${lines.join(' | ')}`);
  assert.deepEqual(lines.filter((l) => !muxer.test(l)), [], 'the switched recording decodes without an error');
  frame = await lastFrame(two.file, W, H);
  assert.deepEqual(spots.map(([x, y]) => colourAt(frame, W, x, y)), ['blue', 'blue', 'blue']);
  level = levels(await lastAudio(two.file, 2));
  assert.ok(level.blue.median > 0.6, `blue alone, full level: ${JSON.stringify(level)}`);
  assert.ok(level.green.max < 0.01 && level.red.max < 0.01, `green disconnected, red never: ${JSON.stringify(level)}`);
  console.log(`mixer ${label}: switched ${JSON.stringify(level)}`);
  for (const x of [two.rec, ...Object.values(players), hub]) await x.release();
}

test('real media through media workers: a chosen colour, a chosen mix, a clean switch', TM, async () => {
  await mix('workers');
});

test('Mixer, real media with --workers 0: the same, the pipeline in the server process', TM, async () => {
  const local = await h.startServer(['--workers', '0']);
  const c = (await h.connectClient(local.url)).client;
  const saved = pipeline;
  try {
    pipeline = await c.create('MediaPipeline');
    await mix('local');
  } finally {
    await pipeline.release().catch(() => {});
    pipeline = saved;
    await h.closeClient(c);
    await local.stop();
  }
});
