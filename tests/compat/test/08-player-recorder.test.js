'use strict';
// PlayerEndpoint and RecorderEndpoint through the official client: URIs, states and their
// events, VideoInfo, position, EndOfStream, http sources, errors, recorded files (ffprobe),
// and what release does to them. Clips are made with ffmpeg in a temp dir.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { makeClip, probe, videoFrameTimes, serveDir, fileUri, eventLog } = require('./media');

let server;
let client;
let pipeline;
let dir;
let web;
const clip = {};

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-media-'));
  // One at a time: the machine may be busy.
  clip.short = await makeClip(path.join(dir, 'short.webm'), { seconds: 2 });
  clip.long = await makeClip(path.join(dir, 'long.webm'), { seconds: 10 });
  clip.mp4 = await makeClip(path.join(dir, 'short.mp4'), { seconds: 2, codecs: 'h264' });
  web = await serveDir(dir);
  server = await h.startServer();
  client = (await h.connectClient(server.url)).client;
  pipeline = await client.create('MediaPipeline');
});

after(async () => {
  if (pipeline) await pipeline.release().catch(() => {});
  await h.closeClient(client);
  if (server) await server.stop();
  if (web) await web.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const T = { timeout: 40000 };
const recPath = (name) => path.join(dir, 'rec', name);

async function player(uri, params = {}) {
  return pipeline.create('PlayerEndpoint', { uri, ...params });
}

// Polls getVideoInfo until the player knows the duration.
async function videoInfo(p) {
  let info;
  await h.waitFor(async () => {
    info = await p.getVideoInfo();
    return info && Number(info.duration) > 0;
  }, 5000, 'a VideoInfo with a duration');
  return info;
}

test('PlayerEndpoint / RecorderEndpoint: file, http(s) and rtsp URIs are taken; getUri, initial state', T, async () => {
  const uris = [fileUri(clip.long), 'http://127.0.0.1:9/clip.webm', 'https://example.invalid/clip.mp4', 'rtsp://127.0.0.1:9/stream'];
  for (const uri of uris) {
    const p = await player(uri);
    assert.ok(p.id.endsWith('_kurento.PlayerEndpoint'), p.id);
    assert.equal(p.constructor.name, 'PlayerEndpoint');
    assert.equal(await p.getUri(), uri);
    assert.equal(await p.getState(), 'STOP');
    await p.release();
  }
  const uri = fileUri(recPath('created.webm'));
  const r = await pipeline.create('RecorderEndpoint', { uri, mediaProfile: 'WEBM' });
  assert.ok(r.id.endsWith('_kurento.RecorderEndpoint'), r.id);
  assert.equal(await r.getUri(), uri);
  assert.equal(await r.getState(), 'STOP');
  await r.release();
});

test('bad URIs are refused at create with 40107 MEDIA_OBJECT_ILLEGAL_PARAM_ERROR', T, async () => {
  const bad = {
    PlayerEndpoint: ['/tmp/clip.webm', 'file://relative/clip.webm', 'file:///tmp/../etc/passwd', 'ftp://host/clip.webm', 'http:///clip.webm', ''],
    RecorderEndpoint: ['/tmp/out.webm', 'file://relative/out.webm', 'file:///tmp/%2e%2e/out.webm'],
  };
  const before = (await pipeline.getChildren()).length;
  for (const [type, uris] of Object.entries(bad)) {
    for (const uri of uris) {
      const err = await h.rejectsWithCode(h.callback(pipeline, 'create', type, { uri }), 40107, assert);
      assert.equal(err.data && err.data.type, 'MEDIA_OBJECT_ILLEGAL_PARAM_ERROR', `${type} ${JSON.stringify(uri)}`);
      assert.equal(typeof err.message, 'string');
    }
  }
  assert.equal((await pipeline.getChildren()).length, before, 'a refused element was left in the pipeline');
});

test('a missing file: play() fails with 40600 URI_PATH_FILE_NOT_FOUND', T, async () => {
  const p = await player(fileUri(path.join(dir, 'no-such-clip.webm')));
  const err = await h.rejectsWithCode(h.callback(p, 'play'), 40600, assert);
  assert.equal(err.data && err.data.type, 'URI_PATH_FILE_NOT_FOUND');
  assert.equal(await p.getState(), 'STOP');
  await p.release();
});

test('play / pause / play / stop: UriEndpointStateChanged, getState and getPosition follow', T, async () => {
  const p = await player(fileUri(clip.long));
  const log = await eventLog(p, ['UriEndpointStateChanged', 'EndOfStream', 'Error']);
  await p.play();
  await log.wait('UriEndpointStateChanged', 3000, (d) => d.state === 'START');
  assert.equal(await p.getState(), 'START');
  await h.sleep(1200);
  const playing = Number(await p.getPosition());
  assert.ok(playing > 400 && playing < 3000, `position after 1.2 s of play: ${playing}`);

  await p.pause();
  await log.wait('UriEndpointStateChanged', 3000, (d) => d.state === 'PAUSE');
  assert.equal(await p.getState(), 'PAUSE');
  const paused1 = Number(await p.getPosition());
  await h.sleep(700);
  const paused2 = Number(await p.getPosition());
  assert.ok(Math.abs(paused2 - paused1) < 100, `position moved while paused: ${paused1} -> ${paused2}`);

  await p.play();
  await h.sleep(700);
  const resumed = Number(await p.getPosition());
  assert.ok(resumed > paused2 + 300, `position after resuming: ${paused2} -> ${resumed}`);
  assert.equal(await p.getState(), 'START');

  await p.stop();
  await log.wait('UriEndpointStateChanged', 3000, (d) => d.state === 'STOP');
  assert.equal(await p.getState(), 'STOP');
  // After stop, play starts from the beginning.
  await p.play();
  await h.sleep(500);
  const again = Number(await p.getPosition());
  assert.ok(again < resumed, `after stop + play the position should start over: ${again} (was ${resumed})`);
  await p.stop();
  await h.sleep(200);
  const states = log.of('UriEndpointStateChanged').map((e) => e.data.state);
  assert.deepEqual(states, ['START', 'PAUSE', 'START', 'STOP', 'START', 'STOP']);
  for (const e of log.of('UriEndpointStateChanged')) {
    assert.equal(e.data.source, p.id);
    assert.equal(e.data.type, 'UriEndpointStateChanged');
  }
  assert.deepEqual(log.of('Error'), [], JSON.stringify(log.of('Error')));
  await p.release();
});

test('getVideoInfo: duration and seekability of WebM and MP4 files', T, async () => {
  for (const [file, ms] of [[clip.long, 10000], [clip.mp4, 2000]]) {
    const p = await player(fileUri(file));
    await p.play();
    const info = await videoInfo(p);
    const label = `${path.basename(file)}: ${JSON.stringify(info)}`;
    assert.ok(Math.abs(Number(info.duration) - ms) <= 150, `duration ${label}`);
    assert.equal(info.isSeekable, true, label);
    assert.equal(Number(info.seekableInit), 0, label);
    assert.ok(Math.abs(Number(info.seekableEnd) - ms) <= 150, `seekableEnd ${label}`);
    await p.release();
  }
});

test('setPosition seeks: getPosition and the end of stream follow', T, async () => {
  const p = await player(fileUri(clip.long));
  const log = await eventLog(p, ['EndOfStream']);
  await p.play();
  await videoInfo(p);
  await p.setPosition(7000);
  await h.sleep(500);
  const pos = Number(await p.getPosition());
  assert.ok(pos >= 6500 && pos < 8500, `position after setPosition(7000): ${pos}`);
  // 3 s were left: the end comes well before the 10 s of the clip.
  await log.wait('EndOfStream', 6000);
  await p.release();
});

test('EndOfStream at the end of a short WebM and MP4 clip', T, async () => {
  for (const file of [clip.short, clip.mp4]) {
    const p = await player(fileUri(file));
    const log = await eventLog(p, ['EndOfStream', 'Error']);
    const t0 = Date.now();
    await p.play();
    const eos = await log.wait('EndOfStream', 10000);
    const took = eos.at - t0;
    assert.ok(took >= 1500, `${path.basename(file)}: EndOfStream after ${took} ms for a 2 s clip`);
    assert.equal(eos.data.source, p.id);
    assert.equal(eos.data.type, 'EndOfStream');
    assert.deepEqual(log.of('Error'), []);
    await p.release();
  }
});

test('http:// source from a local HTTP server plays to EndOfStream; a 404 raises Error', T, async () => {
  const p = await player(`${web.base}/short.webm`);
  const log = await eventLog(p, ['EndOfStream', 'Error']);
  const seen = web.requests.length;
  await p.play();
  const info = await videoInfo(p);
  assert.ok(Math.abs(Number(info.duration) - 2000) <= 150, JSON.stringify(info));
  await log.wait('EndOfStream', 10000);
  assert.deepEqual(log.of('Error'), []);
  assert.ok(web.requests.slice(seen).some((r) => r.url === '/short.webm'), JSON.stringify(web.requests));
  await p.release();

  const missing = await player(`${web.base}/missing.webm`);
  const errors = await eventLog(missing, ['Error', 'EndOfStream']);
  await missing.play();
  const e = await errors.wait('Error', 10000);
  assert.equal(e.data.source, missing.id);
  assert.equal(typeof e.data.description, 'string');
  assert.ok(Number.isInteger(e.data.errorCode), JSON.stringify(e.data));
  assert.equal(typeof e.data.type, 'string');
  assert.deepEqual(errors.of('EndOfStream'), []);
  await missing.release();
});

test('RecorderEndpoint: record / pause / record / stopAndWait events; the WebM file has VP8 and Opus', T, async () => {
  const file = recPath('new/dir/events.webm'); // the directory does not exist yet
  const p = await player(fileUri(clip.long));
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
  const log = await eventLog(r, ['UriEndpointStateChanged', 'Recording', 'Paused', 'Stopped', 'Error']);
  await p.connect(r);
  await p.play();
  await r.record();
  await log.wait('Recording', 3000);
  assert.equal(await r.getState(), 'START');
  await h.sleep(1500);
  await r.pause();
  await log.wait('Paused', 3000);
  assert.equal(await r.getState(), 'PAUSE');
  await h.sleep(700);
  await r.record();
  await h.sleep(1500);
  await r.stopAndWait();
  // stopAndWait returns once the file is complete.
  const info = await probe(file);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  assert.ok(info.duration >= 2.5 && info.duration < 6, `duration ${info.duration} s for 3 s recorded (+0.7 s paused)`);
  await log.wait('Stopped', 3000);
  assert.equal(await r.getState(), 'STOP');
  assert.deepEqual(log.sequence(), [
    'state:START', 'Recording', 'state:PAUSE', 'Paused', 'state:START', 'Recording', 'state:STOP', 'Stopped',
  ]);
  for (const e of log.events) assert.equal(e.data.source, r.id);
  await r.release();
  await p.release();
});

test('RecorderEndpoint: stop() returns at once and Stopped follows with a complete file', T, async () => {
  const file = recPath('stop.webm');
  const p = await player(fileUri(clip.long));
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file) }); // WEBM by default
  const log = await eventLog(r, ['Stopped', 'Error']);
  await p.connect(r);
  await p.play();
  await r.record();
  await h.sleep(1500);
  await r.stop();
  await log.wait('Stopped', 5000);
  const info = await probe(file);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  assert.ok(info.duration >= 0.8 && info.duration < 4, `duration ${info.duration}`);
  assert.deepEqual(log.of('Error'), []);
  await r.release();
  await p.release();
});

test('profiles MP4, MKV and the _ONLY variants give the expected streams; MP4 transcodes VP8 to H.264', T, async () => {
  const p = await player(fileUri(clip.short));
  const plog = await eventLog(p, ['EndOfStream', 'MediaTranscodingStateChanged']);
  const cases = [
    ['MP4', 'mp4', null, (s) => s.length === 2 && s.includes('video:h264') && s.some((x) => x.startsWith('audio:'))],
    ['MKV', 'mkv', null, (s) => s.join() === 'audio:opus,video:vp8'],
    ['MP4_VIDEO_ONLY', 'mp4', 'VIDEO', (s) => s.join() === 'video:h264'],
    ['WEBM_VIDEO_ONLY', 'webm', 'VIDEO', (s) => s.join() === 'video:vp8'],
    ['WEBM_AUDIO_ONLY', 'webm', 'AUDIO', (s) => s.join() === 'audio:opus'],
    ['MKV_AUDIO_ONLY', 'mkv', 'AUDIO', (s) => s.join() === 'audio:opus'],
  ];
  const recs = [];
  for (const [profile, ext, mediaType, check] of cases) {
    const file = recPath(`profile-${profile}.${ext}`);
    const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: profile });
    if (mediaType) await p.connect(r, mediaType);
    else await p.connect(r);
    await r.record();
    recs.push({ profile, file, r, check });
  }
  await p.play();
  await plog.wait('EndOfStream', 15000);
  for (const { r } of recs) await r.stopAndWait();
  for (const { profile, file, check } of recs) {
    const info = await probe(file);
    assert.ok(check(info.streams), `${profile}: streams ${JSON.stringify(info.streams)}`);
    assert.ok(info.duration >= 1.2 && info.duration < 4, `${profile}: duration ${info.duration}`);
  }
  const t = plog.of('MediaTranscodingStateChanged');
  assert.ok(
    t.some((e) => e.data.state === 'TRANSCODING' && e.data.mediaType === 'VIDEO' && e.data.source === p.id),
    `MediaTranscodingStateChanged on the player: ${JSON.stringify(t.map((e) => e.data))}`,
  );
  await p.release();
  for (const { r } of recs) await r.release();
});

// Recordings follow the RTP timestamps of the source, not the arrival times of packets: the
// video track of a 2 s clip lasts 2 s, through the VP8 -> H.264 transcoder too (it used to
// follow the arrival jitter: 2.6 to 3.4 s, frame intervals of 23 to 78 ms).
test('a transcoded (MP4) recording is complete and keeps the timing of the source', {
  ...T,
}, async () => {
  const p = await player(fileUri(clip.short));
  const log = await eventLog(p, ['EndOfStream']);
  const file = recPath('timing.mp4');
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'MP4' });
  const rlog = await eventLog(r, ['Error']);
  await p.connect(r);
  await r.record();
  await p.play();
  await log.wait('EndOfStream', 10000);
  await r.stopAndWait();
  assert.deepEqual(rlog.of('Error').map((e) => e.data.description), [], 'recorder errors');
  const times = await videoFrameTimes(file);
  const span = times[times.length - 1] - times[0];
  let worst = 0;
  for (let i = 1; i < times.length; i++) worst = Math.max(worst, times[i] - times[i - 1]);
  assert.ok(Math.abs(span - 1.967) < 0.1, `H.264 track spans ${span.toFixed(3)} s for ${times.length} frames of a 2 s, 30 fps clip`);
  assert.ok(worst < 0.045, `largest frame interval ${worst.toFixed(3)} s (33 ms expected)`);
  await r.release();
  await p.release();
});

test('stopOnEndOfStream: the recorder stops by itself at the end of the stream', T, async () => {
  const file = recPath('eos.webm');
  const p = await player(fileUri(clip.short));
  const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), stopOnEndOfStream: true });
  const log = await eventLog(r, ['Stopped']);
  await p.connect(r);
  await r.record();
  await p.play();
  await log.wait('Stopped', 10000);
  assert.equal(await r.getState(), 'STOP');
  const info = await probe(file);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8']);
  await r.release();
  await p.release();
});

test('released objects stop: a released player stops fetching, a released recorder finishes its file', T, async () => {
  // A throttled server: the 10 s clip takes far longer than the test to download.
  const slow = await serveDir(dir, { bytesPerSecond: 40000 });
  try {
    const p = await player(`${slow.base}/long.webm`);
    const file = recPath('released.webm');
    const r = await pipeline.create('RecorderEndpoint', { uri: fileUri(file) });
    await p.connect(r);
    await p.play();
    await r.record();
    await h.waitFor(() => slow.requests.some((q) => q.bytes > 0), 5000, 'the player to fetch the clip');
    await h.sleep(1500);
    await r.release();
    await p.release();
    const req = slow.requests.find((q) => q.url === '/long.webm');
    await h.waitFor(() => req.aborted, 5000, 'the released player to close its HTTP connection');
    assert.equal(req.done, false);
    await h.rejectsWithCode(h.callback(p, 'getState'), 40101, assert);
    await h.rejectsWithCode(h.callback(r, 'getState'), 40101, assert);
    // The recorder released while recording still leaves a complete file.
    const info = await h.waitFor(async () => {
      try {
        const i = await probe(file);
        return i.streams.length === 2 ? i : null;
      } catch (_) {
        return null;
      }
    }, 5000, 'a readable recording');
    assert.deepEqual(info.streams, ['audio:opus', 'video:vp8']);
  } finally {
    await slow.close();
  }
});

test('a released pipeline takes its players and recorders with it', T, async () => {
  const own = await client.create('MediaPipeline');
  const p = await own.create('PlayerEndpoint', { uri: fileUri(clip.long) });
  const r = await own.create('RecorderEndpoint', { uri: fileUri(recPath('pipeline.webm')) });
  await p.connect(r);
  await p.play();
  await r.record();
  await h.sleep(800);
  await own.release();
  await h.rejectsWithCode(h.callback(p, 'getState'), 40101, assert);
  await h.rejectsWithCode(h.callback(r, 'getState'), 40101, assert);
  const pipelines = await (await client.getServerManager()).getPipelines();
  assert.ok(!pipelines.some((x) => x.id === own.id), 'the pipeline is still listed');
});
