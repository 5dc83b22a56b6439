'use strict';
// HttpPostEndpoint from a browser: a page of the demo app's origin records Chromium's fake
// camera and microphone with MediaRecorder (WebM, VP8 + Opus) and POSTs the recording with
// fetch to the endpoint's URL on Fluo's HTTP listener (another origin: a CORS preflight
// first); the endpoint feeds a RecorderEndpoint; EndOfStream arrives and ffprobe reads the
// recording back. The Kurento side is the official kurento-client (the web app's).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { setup, withDiagnostics, waitFor, ROOT } = require('../lib/env');
const { probe, fileUri } = require('../lib/media');

const kurentoClient = require(path.join(ROOT, 'web/node_modules/kurento-client'));

const RECORD_MS = 3000;

let env;
let client;
before(async () => {
  env = await setup('http-post', { fluoArgs: () => ['--http-port', '0'] });
  client = await new Promise((resolve, reject) => {
    const c = kurentoClient(env.fluo.url, { failAfter: 5, duplicates_timeout: 1000 }, (err) => (err ? reject(err) : resolve({ c })));
  }).then((x) => x.c);
});
after(async () => {
  if (client) client.close();
  if (env) await env.teardown();
});

test('http-post: a MediaRecorder recording POSTed by a page reaches a RecorderEndpoint; EndOfStream; it plays', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const pipeline = await client.create('MediaPipeline');
    const ep = await pipeline.create('HttpPostEndpoint');
    const file = path.join(env.dir, 'posted.webm');
    const rec = await pipeline.create('RecorderEndpoint', { uri: fileUri(file), mediaProfile: 'WEBM' });
    const events = [];
    for (const type of ['EndOfStream', 'Error']) ep.on(type, (data) => events.push({ type, data }));
    await ep.connect(rec);
    await rec.record();
    const url = await ep.getUrl();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/post\//);

    const page = await env.browser.newPage('http-post');
    await page.goto(`${env.web.base}/`);
    const result = await page.evaluate(async ({ url, ms }) => {
      const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      const recorder = new MediaRecorder(stream, { mimeType: 'video/webm;codecs=vp8,opus' });
      const chunks = [];
      recorder.ondataavailable = (e) => chunks.push(e.data);
      recorder.start(500);
      await new Promise((r) => setTimeout(r, ms));
      await new Promise((r) => {
        recorder.onstop = r;
        recorder.stop();
      });
      stream.getTracks().forEach((t) => t.stop());
      const body = new Blob(chunks, { type: 'video/webm' });
      const res = await fetch(url, { method: 'POST', body, headers: { 'Content-Type': 'video/webm' } });
      return { status: res.status, text: await res.text(), size: body.size, origin: location.origin };
    }, { url, ms: RECORD_MS });
    assert.notEqual(new URL(url).origin, result.origin, 'the page is of another origin');
    assert.equal(result.status, 200, JSON.stringify(result));
    assert.ok(result.size > 10000, `a recording of ${result.size} bytes`);

    await waitFor(async () => events.some((e) => e.type === 'EndOfStream'), 10000, 'EndOfStream');
    await rec.stopAndWait();
    assert.ok(fs.existsSync(file), 'the recording');
    const info = await probe(file);
    assert.deepEqual(info.streams, ['audio:opus', 'video:vp8'], JSON.stringify(info));
    assert.ok(Math.abs(info.duration - RECORD_MS / 1000) <= 1, `recorded ${info.duration} s of ${RECORD_MS} ms`);
    assert.deepEqual(events.filter((e) => e.type === 'Error'), []);
    await page.close();
    await pipeline.release();
  }));
