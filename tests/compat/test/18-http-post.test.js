'use strict';
// HttpPostEndpoint through the official client: getUrl on Fluo's HTTP listener, WebM and
// fragmented MP4 clips uploaded with curl (chunked and with a Content-Length) into a
// RecorderEndpoint (EndOfStream, the recording read back by ffprobe), the session events,
// and bad input: a second POST while one runs, an unknown path, another method, a body that
// is not media, bodies over the limit, a client that stops sending; the element stays
// usable after each, and its release frees its URL; the URL expires disconnectionTimeout
// after the last upload (getUrl "", 404), as in KMS. Run with media workers and with
// --workers 0. Clips are made with ffmpeg in a temp dir.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');
const { makeClip, probe, fileUri, eventLog } = require('./media');

// The limit of the servers that test it (the others keep the default, 2 GiB): under the
// clips' size, over the listener's first read (64 KiB).
const MAX_BODY = 100 * 1024;
const READ_TIMEOUT_S = 2;
const CLIP_S = 3;
const T = { timeout: 90000 };

let dir;
const clip = {};
const modes = {};

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-post-'));
  clip.webm = await makeClip(path.join(dir, 'clip.webm'), { seconds: CLIP_S });
  clip.mp4 = await makeClip(path.join(dir, 'clip.mp4'), { seconds: CLIP_S, codecs: 'h264frag' });
  fs.mkdirSync(path.join(dir, 'rec'));
  for (const [mode, extra] of [['workers', []], ['in-process', ['--workers', '0']]]) {
    for (const [name, more] of [[mode, []], [`${mode}-limited`, ['--http-max-body', String(MAX_BODY)]]]) {
      const server = await h.startServer([
        '--http-port', '0', '--http-read-timeout-secs', String(READ_TIMEOUT_S), ...extra, ...more,
      ]);
      const client = (await h.connectClient(server.url)).client;
      const pipeline = await client.create('MediaPipeline');
      modes[name] = { server, client, pipeline };
    }
  }
});

after(async () => {
  for (const m of Object.values(modes)) {
    await m.pipeline.release().catch(() => {});
    await h.closeClient(m.client);
    await m.server.stop();
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// curl's status and body for a POST of `file` (chunked, or with its length).
function curl(url, file, { chunked = false, method = 'POST' } = {}) {
  const args = ['-sS', '--max-time', '60', '-o', '-', '-w', '\n%{http_code}', '-X', method,
    '-H', 'Content-Type: video/webm'];
  if (chunked) args.push('-H', 'Transfer-Encoding: chunked');
  if (file) args.push('--data-binary', `@${file}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    execFile('curl', args, { maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`curl ${args.join(' ')}: ${stderr || error.message}`));
      const i = stdout.lastIndexOf('\n');
      resolve({ status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) });
    });
  });
}

// A POST whose body the test writes itself: `parts` (Buffers, or numbers: ms to wait), chunked.
function slowPost(url, parts) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ method: 'POST', host: u.hostname, port: u.port, path: u.pathname,
      headers: { 'Transfer-Encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    (async () => {
      for (const p of parts) {
        if (typeof p === 'number') await h.sleep(p);
        else if (!req.destroyed) req.write(p);
      }
      if (!req.destroyed) req.end();
    })();
  });
}

const URL_RE = /^http:\/\/127\.0\.0\.1:(\d+)\/post\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// An HttpPostEndpoint recorded into a WebM file; the recording's path and the events.
async function postIntoRecorder(pipeline, name, params = {}) {
  const ep = await pipeline.create('HttpPostEndpoint', params);
  const file = path.join(dir, 'rec', name);
  const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
  const log = await eventLog(ep, ['EndOfStream', 'Error', 'MediaSessionStarted', 'MediaSessionTerminated']);
  await ep.connect(rec);
  await rec.record();
  return { ep, rec, file, log, url: await ep.getUrl() };
}

async function recorded(r) {
  await r.rec.stopAndWait();
  return probe(r.file);
}

for (const mode of ['workers', 'in-process']) {
  test(`${mode}: getUrl names an unguessable path on the HTTP listener; release frees it`, T, async () => {
    const { pipeline } = modes[mode];
    const a = await pipeline.create('HttpPostEndpoint');
    const b = await pipeline.create('HttpPostEndpoint', { disconnectionTimeout: 5, useEncodedMedia: true });
    assert.ok(a.id.endsWith('_kurento.HttpPostEndpoint'), a.id);
    const [ua, ub] = [await a.getUrl(), await b.getUrl()];
    assert.match(ua, URL_RE);
    assert.match(ub, URL_RE);
    assert.notEqual(ua, ub);
    assert.equal(ua.match(URL_RE)[1], ub.match(URL_RE)[1], 'one listener');
    await a.release();
    const gone = await curl(ua, clip.webm);
    assert.equal(gone.status, 404, gone.body);
    await b.release();
  });

  for (const [kind, chunked] of [['webm', true], ['mp4', false], ['webm', false], ['mp4', true]]) {
    const how = chunked ? 'chunked' : 'with a Content-Length';
    test(`${mode}: a ${kind} clip POSTed ${how} reaches a RecorderEndpoint; EndOfStream; the recording plays`, T, async () => {
      const r = await postIntoRecorder(modes[mode].pipeline, `${mode}-${kind}-${chunked}.webm`);
      const res = await curl(r.url, clip[kind], { chunked });
      assert.equal(res.status, 200, res.body);
      await r.log.wait('EndOfStream', 10000);
      await r.log.wait('MediaSessionStarted', 1000);
      const info = await recorded(r);
      assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
      assert.ok(Math.abs(info.duration - CLIP_S) <= 1, `recorded ${info.duration} s of a ${CLIP_S} s clip`);
      assert.deepEqual(r.log.of('Error'), []);
      // disconnectionTimeout (2 s by default) after the connection ended: the session ends.
      await r.log.wait('MediaSessionTerminated', 6000);
      await r.rec.release();
      await r.ep.release();
    });
  }
}

test('the URL expires disconnectionTimeout after the last upload, as in KMS; a POST within it goes on', T, async () => {
  const r = await postIntoRecorder(modes.workers.pipeline, 'expiry.webm', { disconnectionTimeout: 1 });
  const [one, two] = [await curl(r.url, clip.webm), await curl(r.url, clip.webm)];
  assert.equal(one.status, 200, one.body);
  assert.equal(two.status, 200, `a POST within the timeout, the same element: ${two.body}`);
  const ended = Date.now();
  assert.equal(await r.ep.getUrl(), r.url, 'the URL holds within the timeout');
  await r.log.wait('MediaSessionTerminated', 5000);
  assert.ok(Date.now() - ended >= 900, `expired ${Date.now() - ended} ms after the last upload`);
  assert.equal(r.log.of('MediaSessionStarted').length, 1, 'one session for both uploads');
  assert.equal(await r.ep.getUrl(), '', 'getUrl answers "" once the URL expired');
  const gone = await curl(r.url, clip.webm);
  assert.equal(gone.status, 404, gone.body);
  const info = await recorded(r);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  await r.rec.release();
  await r.ep.release();
});

test('useEncodedMedia: a WebM upload is recorded without decoding', T, async () => {
  const r = await postIntoRecorder(modes.workers.pipeline, 'encoded.webm', { useEncodedMedia: true });
  const res = await curl(r.url, clip.webm);
  assert.equal(res.status, 200, res.body);
  await r.log.wait('EndOfStream', 10000);
  const info = await recorded(r);
  assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
  assert.ok(Math.abs(info.duration - CLIP_S) <= 1, `recorded ${info.duration} s`);
  await r.rec.release();
  await r.ep.release();
});

for (const mode of ['workers', 'in-process']) {
  test(`${mode}: bad requests get clear statuses and Error events; the element stays usable`, T, async () => {
    const { pipeline } = modes[mode];
    // Its URL must outlive each refused upload (each starts the disconnection timeout).
    const r = await postIntoRecorder(pipeline, `${mode}-after-bad.webm`, { disconnectionTimeout: 600 });
    const base = r.url.slice(0, r.url.indexOf('/post/'));

    const unknown = await curl(`${base}/post/00000000-0000-4000-8000-000000000000`, clip.webm);
    assert.equal(unknown.status, 404, unknown.body);
    assert.equal((await curl(`${base}/`, clip.webm)).status, 404);
    const get = await curl(r.url, null, { method: 'GET' });
    assert.equal(get.status, 405, get.body);

    // A body that is not media: 415, and the element's Error event.
    const text = path.join(dir, 'text.txt');
    fs.writeFileSync(text, 'this is not a media file\n'.repeat(4000));
    const bad = await curl(r.url, text);
    assert.equal(bad.status, 415, bad.body);
    const err = await r.log.wait('Error', 5000);
    assert.equal(err.data.type, 'HTTP_POST_ERROR');
    assert.equal(err.data.errorCode, 40003);
    assert.doesNotMatch(err.data.description, /0x[0-9a-f]{6,}/);

    // Over the limit (a server with --http-max-body): with a Content-Length at once,
    // chunked once the limit is passed; each an Error event.
    assert.ok(fs.statSync(clip.webm).size > MAX_BODY, 'the clip is over the limit');
    const limited = await postIntoRecorder(modes[`${mode}-limited`].pipeline, `${mode}-limited.webm`,
      { disconnectionTimeout: 600 });
    for (const chunked of [false, true]) {
      const tooBig = await curl(limited.url, clip.webm, { chunked });
      assert.equal(tooBig.status, 413, `chunked ${chunked}: ${tooBig.body}`);
      assert.match(tooBig.body, /limit of 102400 bytes/);
      const n = chunked ? 2 : 1;
      await h.waitFor(() => limited.log.of('Error').filter((e) => /limit of/.test(e.data.description)).length >= n,
        5000, `the too-big Error event (chunked ${chunked})`);
    }
    await limited.rec.release();
    await limited.ep.release();

    // A client that stops sending: 408 after the read timeout.
    const head = fs.readFileSync(clip.webm).subarray(0, 20000);
    const t0 = Date.now();
    const stalled = await slowPost(r.url, [head, (READ_TIMEOUT_S + 3) * 1000]);
    assert.equal(stalled.status, 408, stalled.body);
    assert.ok(Date.now() - t0 < (READ_TIMEOUT_S + 3) * 1000, 'answered before the client went on');
    await h.waitFor(() => r.log.of('Error').some((e) => /sent nothing/.test(e.data.description)), 5000, 'the stall Error');

    // A second POST while one runs: 409; the first completes.
    const whole = fs.readFileSync(clip.webm);
    const first = slowPost(r.url, [whole.subarray(0, 30000), 1500, whole.subarray(30000)]);
    await h.sleep(500);
    const second = await curl(r.url, clip.webm);
    assert.equal(second.status, 409, second.body);
    const done = await first;
    assert.equal(done.status, 200, done.body);
    await r.log.wait('EndOfStream', 10000);
    const info = await recorded(r);
    assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
    assert.ok(info.duration >= CLIP_S - 1, `the later upload recorded ${info.duration} s`);

    await r.rec.release();
    await r.ep.release();
    assert.equal((await curl(r.url, clip.webm)).status, 404, 'released: its URL is gone');
  });
}
