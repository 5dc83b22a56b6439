'use strict';
// Composite (the MCU hub) through the official client: create with KMS's defaults and bad
// sizes, ports, connections, release cascades, bad input; real media: three players of
// different colours, aspect ratios and tones into a Composite, one port's output recorded
// and read back with ffmpeg: the grid (each input's colour in its cell, black bars where its
// aspect ratio leaves them, black where no input is) and the audio (port A's output holds
// the other two tones, not A's own, and does not clip). The media test runs with the
// default media workers and again with --workers 0 (the pipeline in the server's process).
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { probe, fileUri, eventLog } = require('./media');
const tones = require('./tones');

const { run, toneClip, lastAudio, windowLevels } = tones;

let server;
let client;
let pipeline;
let dir;
const clip = {};

const W = 800;
const H = 600;
const lastFrame = (file) => tones.lastFrame(file, W, H);
const colourAt = (frame, x, y) => tones.colourAt(frame, W, x, y);

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-composite-'));
  // 4:3, 16:9 and 3:4: in the 2x2 grid's 400x300 cells the first fills its cell, the second
  // has black bars above and below, the third on its left and right.
  clip.red = await toneClip(path.join(dir, 'red.webm'), 'red', '320x240', 440, 30);
  clip.blue = await toneClip(path.join(dir, 'blue.webm'), 'blue', '320x180', 1000, 30);
  clip.green = await toneClip(path.join(dir, 'green.webm'), 'green', '240x320', 2500, 30);
  // A moving picture (testsrc2) with a tone: its encode spends what its bitrate allows.
  clip.moving = path.join(dir, 'moving.webm');
  await run('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-f', 'lavfi', '-i', 'aevalsrc=0.8*sin(2*PI*440*t):s=48000',
    '-t', '30', '-c:v', 'libvpx', '-b:v', '1M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
    '-c:a', 'libopus', '-b:a', '64k', '-f', 'webm', clip.moving,
  ]);
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
const TM = { timeout: 90000 };
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('Composite and its HubPorts are created; ids, children; release cascades', T, async () => {
  const hub = await pipeline.create('Composite');
  assert.equal(hub.constructor.name, 'Composite');
  assert.match(hub.id, new RegExp(`^${escapeRe(pipeline.id)}/${h.UUID}_kurento\\.Composite$`));
  const a = await hub.createHubPort();
  const b = await hub.createHubPort();
  assert.equal(a.constructor.name, 'HubPort');
  assert.match(a.id, new RegExp(`^${escapeRe(pipeline.id)}/${h.UUID}_kurento\\.HubPort$`));
  assert.deepEqual((await hub.getChildren()).map((c) => c.id).sort(), [a.id, b.id].sort());
  // A port is a media element: connections both ways, media-flow queries, stats.
  const pt = await pipeline.create('PassThrough');
  await pt.connect(a);
  await a.connect(pt);
  assert.equal((await a.getSourceConnections()).length, 3);
  assert.equal(await h.callback(a, 'isMediaFlowingIn', 'VIDEO'), false);
  assert.equal(typeof (await h.callback(a, 'getStats')), 'object');
  await b.release();
  assert.deepEqual((await hub.getChildren()).map((c) => c.id), [a.id]);
  await hub.release();
  for (const x of [hub, a, b]) await h.rejectsWithCode(h.callback(x, 'getName'), 40101, assert);
  assert.deepEqual(await pt.getSinkConnections(), []);
  // Other sizes and rates are accepted; a pipeline's release takes the hub and its ports.
  const pl = await client.create('MediaPipeline');
  const small = await pl.create('Composite', { width: 320, height: 240, framerate: 30 });
  const port = await small.createHubPort();
  await pl.release();
  for (const x of [small, port]) await h.rejectsWithCode(h.callback(x, 'getName'), 40101, assert);
  await pt.release();
});

test('bad input: sizes and rates out of range, ports of released hubs, foreign ports', T, async () => {
  for (const bad of [{ width: 0 }, { height: -5 }, { width: 100000 }, { framerate: 0 }, { framerate: 1000 }]) {
    const err = await h.rejectsWithCode(pipeline.create('Composite', bad), 40107, assert);
    assert.ok(!/0x[0-9a-f]{6,}/i.test(err.message), err.message);
  }
  const hub = await pipeline.create('Composite');
  const port = await hub.createHubPort();
  const other = await client.create('MediaPipeline');
  const foreign = await other.create('PassThrough');
  await h.rejectsWithCode(h.callback(port, 'connect', foreign), 40004, assert);
  await h.rejectsWithCode(h.callback(foreign, 'connect', port), 40004, assert);
  await hub.release();
  await h.rejectsWithCode(h.callback(port, 'connect', foreign), 40101, assert);
  await other.release();
});

test('ports forced to H.264 share one H.264 encode of the grid; MP4 recordings without a transcoder', TM, async () => {
  const hub = await pipeline.create('Composite');
  const src = await hub.createHubPort();
  const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip.red) });
  await player.connect(src);
  const outs = [];
  for (const name of ['a', 'b']) {
    const port = await hub.createHubPort();
    await h.callback(port, 'setVideoFormat', { codec: 'H264', framerate: { numerator: 15, denominator: 1 } });
    const file = path.join(dir, `h264-${name}.mp4`);
    const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'MP4_VIDEO_ONLY' });
    const log = await eventLog(rec, ['MediaFlowInStateChanged']);
    await port.connect(rec, 'VIDEO');
    outs.push({ port, file, rec, log });
  }
  await player.play();
  for (const o of outs) {
    await o.log.wait('MediaFlowInStateChanged', 15000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
    await o.rec.record();
  }
  await h.sleep(4000);
  for (const o of outs) {
    // The port sends H.264 itself: the router puts no transcoder after it.
    assert.equal(await h.callback(o.port, 'isMediaTranscoding', 'VIDEO'), false);
    await o.rec.stopAndWait();
    const info = await probe(o.file);
    assert.deepEqual(info.streams, ['video:h264'], JSON.stringify(info));
  }
  // One H.264 encode of the grid in the hub's pipeline for both ports (and the VP8 one of
  // src, which is not forced).
  const dot = await h.callback(outs[0].port, 'getGstreamerDot');
  const named = (re) => new Set(dot.match(re) || []);
  assert.equal(named(/x264enc\d+/g).size, 1, `one H.264 encoder: ${[...named(/x264enc\d+/g)]}`);
  assert.equal(named(/vp8enc\d+/g).size, 1, `one VP8 encoder: ${[...named(/vp8enc\d+/g)]}`);
  for (const x of [player, hub, ...outs.map((o) => o.rec)]) await x.release();
});

// Frames per second, kbps and the shortest and median gaps (s) between packets of `file`'s
// stream `sel` ('v' or 'a') from second `from` on, by its packets' times and sizes.
async function rates(file, sel, from) {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-select_streams', sel, '-show_entries', 'packet=pts_time,size', '-of', 'csv=p=0', file]);
  const pkts = stdout.split('\n').filter((l) => l.trim() !== '').map((l) => l.split(',').map(Number))
    .filter(([t]) => t >= from).sort((a, b) => a[0] - b[0]);
  assert.ok(pkts.length >= 3, `${file} ${sel}: ${pkts.length} packets`);
  const span = pkts[pkts.length - 1][0] - pkts[0][0];
  const bytes = pkts.slice(1).reduce((n, [, size]) => n + size, 0);
  const gaps = pkts.slice(1).map(([t], i) => t - pkts[i][0]).sort((a, b) => a - b);
  const r3 = (x) => Number(x.toFixed(3));
  return {
    fps: Number(((pkts.length - 1) / span).toFixed(2)),
    kbps: Math.round((bytes * 8) / span / 1000),
    gap: { min: r3(gaps[0]), median: r3(gaps[gaps.length >> 1]) },
    packets: pkts.length,
  };
}

test("each port's output follows its own settings: frame rate, video and Opus bitrates; encodes shared", TM, async () => {
  const moving = clip.moving;
  const t0 = Date.now();
  const step = (what) => console.log(`settings test: ${what} at ${Date.now() - t0} ms`);
  // A small grid: its encodes keep their rate on a loaded machine.
  const hub = await pipeline.create('Composite', { width: 320, height: 240, framerate: 15 });
  const src = await hub.createHubPort();
  const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(moving) });
  await player.connect(src);
  const outs = {};
  for (const name of ['plain', 'forced', 'same']) {
    const port = await hub.createHubPort();
    const file = path.join(dir, `settings-${name}.webm`);
    const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
    const log = await eventLog(rec, ['MediaFlowInStateChanged']);
    await port.connect(rec);
    outs[name] = { port, file, rec, log };
  }
  await player.play();
  for (const o of Object.values(outs)) {
    await o.log.wait('MediaFlowInStateChanged', 15000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  }
  step('flowing');
  // Set while the grid flows to them: 'forced' and 'same' move to one new encode.
  for (const name of ['forced', 'same']) {
    const { port } = outs[name];
    await h.callback(port, 'setVideoFormat', { codec: 'VP8', framerate: { numerator: 3, denominator: 1 } });
    await port.setMaxEncoderBitrate(60000);
    await h.callback(port, 'setAudioFormat', { codec: 'OPUS', bitrate: 8000 });
  }
  step('set');
  await h.sleep(1500);
  const dot = await h.callback(src, 'getGstreamerDot');
  const vp8 = [...new Set(dot.match(/vp8enc\d+/g) || [])];
  assert.equal(vp8.length, 2, `one VP8 encode per (fps, bitrate): ${vp8}`);
  for (const o of Object.values(outs)) await o.rec.record();
  step('recording');
  await h.sleep(7000);
  const seen = {};
  for (const [name, o] of Object.entries(outs)) {
    await o.rec.stopAndWait();
    assert.deepEqual((await probe(o.file)).streams, ['audio:opus', 'video:vp8'], name);
    seen[name] = { video: await rates(o.file, 'v', 1), audio: await rates(o.file, 'a', 1) };
    step(`${name} read`);
  }
  console.log(`composite port settings (${JSON.stringify(seen)})`);
  const { plain, forced } = seen;
  // The default port: the hub's 15 fps clock (frames 1/15 s apart; a loaded machine's
  // encoder drops some, leaving gaps of several 1/15 s), its 300 kbps VP8 and 64 kbps Opus.
  const text = JSON.stringify(seen);
  assert.ok(plain.video.gap.min < 0.1 && plain.video.fps > 4 && plain.video.fps < 16.5, `default fps: ${text}`);
  assert.ok(plain.video.kbps > 150, `default video bitrate: ${text}`);
  assert.ok(plain.audio.kbps > 40, `default Opus bitrate: ${text}`);
  // The forced one: 3 fps (frames 1/3 s apart), at most ~60 kbps of video; Opus asked for
  // 8 kbps (libopus makes ~18 of a stereo tone at that setting).
  assert.ok(forced.video.fps > 2.4 && forced.video.fps < 3.6 && forced.video.gap.min > 0.25, `forced fps: ${text}`);
  assert.ok(forced.video.kbps < plain.video.kbps / 3 && forced.video.kbps < 100, `forced video bitrate: ${text}`);
  assert.ok(forced.audio.kbps < plain.audio.kbps / 2, `forced Opus bitrate: ${text}`);
  // Both forced ports released: their encode goes.
  await outs.forced.port.release();
  await outs.same.port.release();
  // Within a second (the dot asked every 50 ms, rather than once after 1 s).
  const encodes = async () => new Set((await h.callback(src, 'getGstreamerDot')).match(/vp8enc\d+/g) || []).size;
  const left = await h.waitFor(async () => {
    const n = await encodes();
    return n === 1 ? n : null;
  }, 1000, 'one VP8 encode').catch((e) => {
    // Out of time: the assertion below says how many are left.
    if (!/^timed out/.test(e.message)) throw e;
    return encodes();
  });
  assert.equal(left, 1, 'the unused encode is removed');
  for (const x of [player, hub, ...Object.values(outs).map((o) => o.rec)]) await x.release();
});

// A UDP socket on 127.0.0.1 counting the RTP payload types it receives.
async function rtpCounter() {
  const sock = dgram.createSocket('udp4');
  const pts = new Map();
  sock.on('message', (m) => {
    if (m.length >= 12) pts.set(m[1] & 0x7f, (pts.get(m[1] & 0x7f) || 0) + 1);
  });
  await new Promise((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return { port: sock.address().port, count: (pt) => pts.get(pt) || 0, pts, close: () => sock.close() };
}

test("a port's setAudioFormat PCMU / PCMA: the port sends that codec itself, no transcoder after it", TM, async () => {
  const hub = await pipeline.create('Composite', { width: 320, height: 240, framerate: 15 });
  const src = await hub.createHubPort();
  const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip.red) });
  await player.connect(src);
  await player.play();
  // To an RtpEndpoint that takes G.711 only (it answers the offer's one codec). A port left
  // as it is sends Opus: the router transcodes it (the check below can tell).
  for (const [codec, pt] of [[null, 0], ['PCMU', 0], ['PCMA', 8]]) {
    const port = await hub.createHubPort();
    if (codec) await h.callback(port, 'setAudioFormat', { codec, bitrate: 0 });
    const peer = await rtpCounter();
    const rtp = await pipeline.create('RtpEndpoint');
    const name = pt === 0 ? 'PCMU' : 'PCMA';
    const offer = `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=peer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n`
      + `m=audio ${peer.port} RTP/AVP ${pt}\r\na=rtpmap:${pt} ${name}/8000\r\na=recvonly\r\n`;
    await rtp.processOffer(offer);
    await port.connect(rtp, 'AUDIO');
    await h.waitFor(() => peer.count(pt) >= 25, 15000, `${name} packets from a port set to ${codec}`);
    const transcoding = await h.callback(port, 'isMediaTranscoding', 'AUDIO');
    console.log(`port set to ${codec}: ${JSON.stringify([...peer.pts])}, transcoding ${transcoding}`);
    assert.equal(transcoding, codec === null, `port set to ${codec}: a transcoder after it ${transcoding}`);
    peer.close();
    await rtp.release();
    await port.release();
  }
  await player.release();
  await hub.release();
});

async function grid(label) {
  const hub = await pipeline.create('Composite');
  const colours = ['red', 'blue', 'green'];
  const ports = {};
  const players = {};
  for (const c of colours) {
    ports[c] = await hub.createHubPort();
    players[c] = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip[c]) });
    await players[c].connect(ports[c]);
  }
  const file = path.join(dir, `grid-${label}.webm`);
  const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
  const log = await eventLog(rec, ['MediaFlowInStateChanged']);
  await ports.red.connect(rec);
  for (const c of colours) await players[c].play();
  await log.wait('MediaFlowInStateChanged', 15000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  await h.waitFor(async () => (await h.callback(ports.blue, 'isMediaFlowingIn', 'VIDEO')) === true, 10000, 'blue flowing in');
  await rec.record();
  await h.sleep(6000);
  await rec.stopAndWait();
  const info = await probe(file);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));

  // The grid: 2x2 cells of 400x300, each input in one cell (in the order their video came).
  const frame = await lastFrame(file);
  assert.equal(frame.length, W * H * 3, 'an 800x600 frame');
  const cells = [[0, 0], [400, 0], [0, 300], [400, 300]].map(([x, y]) => ({
    centre: colourAt(frame, x + 200, y + 150),
    top: colourAt(frame, x + 200, y + 12),
    left: colourAt(frame, x + 12, y + 150),
  }));
  const seen = cells.map((c) => c.centre).sort();
  assert.deepEqual(seen, ['black', 'blue', 'green', 'red'], JSON.stringify(cells));
  const cell = (c) => cells.find((x) => x.centre === c);
  assert.deepEqual(cell('red'), { centre: 'red', top: 'red', left: 'red' }, '4:3 fills its cell');
  assert.deepEqual(cell('blue'), { centre: 'blue', top: 'black', left: 'blue' }, '16:9: bars above and below');
  assert.deepEqual(cell('green'), { centre: 'green', top: 'green', left: 'black' }, '3:4: bars left and right');
  assert.deepEqual(cell('black'), { centre: 'black', top: 'black', left: 'black' }, 'the empty cell');

  // The audio of red's port: blue's and green's tones, not red's own, without clipping;
  // judged in 250 ms windows (a window a loaded machine left short does not decide).
  const samples = await lastAudio(file, 3);
  const level = windowLevels(samples, { own: 440, blue: 1000, green: 2500 });
  const peak = samples.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const text = JSON.stringify(level);
  // Each of the two others at half its level (0.8 / 2): mixed, normalised, not clipped.
  for (const l of [level.blue, level.green]) assert.ok(l.median > 0.3 && l.max < 0.5, `the others' tones: ${text}`);
  assert.ok(level.own.median < Math.min(level.blue.median, level.green.median) / 30, `its own tone: ${text}`);
  assert.ok(peak < 0.95, `peak ${peak}: clipped (${text})`);
  console.log(`composite ${label}: tone levels ${text}, peak ${peak.toFixed(3)}`);

  // A port that joins now (no input of its own) sees the grid from a keyframe: its
  // recording's first video packet is one, within its first second (the grid's encoder makes
  // one every 4 s by itself; the join and the recorder's request force one).
  const late = await hub.createHubPort();
  const file3 = path.join(dir, `late-${label}.webm`);
  const rec3 = await pipeline.create('RecorderEndpoint', { uri: fileUri(file3), mediaProfile: 'WEBM_VIDEO_ONLY' });
  const log3 = await eventLog(rec3, ['MediaFlowInStateChanged']);
  await late.connect(rec3);
  await log3.wait('MediaFlowInStateChanged', 10000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  await h.sleep(1000);
  await rec3.record();
  await h.sleep(2000);
  await rec3.stopAndWait();
  const { stdout: pkts } = await run('ffprobe', ['-v', 'error', '-select_streams', 'v', '-show_entries', 'packet=pts_time,flags', '-of', 'csv=p=0', file3]);
  const first = pkts.split('\n').filter((l) => l.trim() !== '')[0] || '';
  assert.match(first, /^0\.\d+,K/, `the late port's first packet: ${first}`);
  const f3 = await lastFrame(file3);
  assert.deepEqual([[200, 150], [600, 150], [200, 450], [600, 450]].map(([x, y]) => colourAt(f3, x, y)).sort(), ['black', 'blue', 'green', 'red']);
  await late.release();
  await rec3.release();

  // Releasing a port re-lays the grid: with two inputs left, 2x1 cells of 400x600.
  await ports.green.release();
  const file2 = path.join(dir, `grid2-${label}.webm`);
  const rec2 = await pipeline.create('RecorderEndpoint', { uri: fileUri(file2), mediaProfile: 'WEBM' });
  const log2 = await eventLog(rec2, ['MediaFlowInStateChanged']);
  await ports.blue.connect(rec2);
  await log2.wait('MediaFlowInStateChanged', 10000, (e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  await rec2.record();
  await h.sleep(3000);
  await rec2.stopAndWait();
  const f2 = await lastFrame(file2);
  const halves = [0, 400].map((x) => colourAt(f2, x + 200, 300)).sort();
  assert.deepEqual(halves, ['blue', 'red'], 'two cells side by side');
  // 4:3 in a 400x600 cell: 400x300 in its middle, black above it.
  const redX = colourAt(f2, 200, 300) === 'red' ? 0 : 400;
  assert.equal(colourAt(f2, redX + 200, 100), 'black');
  // At least 3 windows (a loaded machine's 3 s recording may hold under 1 s of audio).
  const level2 = windowLevels(await lastAudio(file2, 2), { red: 440, green: 2500 }, 3);
  assert.ok(level2.red.median > 0.1, `blue hears red: ${JSON.stringify(level2)}`);
  assert.ok(level2.green.max < 0.01, `the released green port is not heard: ${JSON.stringify(level2)}`);
  for (const x of [players.red, players.blue, players.green, rec, rec2, hub]) await x.release();
}

test('real media through media workers: the grid, letterboxed cells, mix-minus audio, a re-laid grid', TM, async () => {
  await grid('workers');
});

test('Composite, real media with --workers 0: the same, the pipeline in the server process', TM, async () => {
  const local = await h.startServer(['--workers', '0']);
  const c = (await h.connectClient(local.url)).client;
  const saved = pipeline;
  try {
    pipeline = await c.create('MediaPipeline');
    await grid('local');
  } finally {
    await pipeline.release().catch(() => {});
    pipeline = saved;
    await h.closeClient(c);
    await local.stop();
  }
});
