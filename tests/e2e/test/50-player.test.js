'use strict';
// player: a PlayerEndpoint -> WebRtcEndpoint -> page, for clips made here with ffmpeg: WebM
// (VP8 + Opus) and MP4 (H.264 + AAC) from file:// paths, and the WebM over http:// from a
// local HTTP server. The web app gets the same clips as its samples (--media-dir) and
// --player-any-uri for the other URIs. Fluo runs with --auth-token and the web app passes it
// (--access-token, kurento-client's access_token); a second web app without
// --player-any-uri plays its samples and refuses other URIs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const WebSocket = require('ws');
const { setup, tmpDir, removeTmpDir, startWeb, withDiagnostics, waitFor, listPipelines, log, sleep } = require('../lib/env');
const { assertVideoPlaying, pageState, sample, pageTimings, logTimings } = require('../lib/video');
const { openPage, remoteStreamsCheck } = require('../lib/pages');
const { makeClip, serveDir, fileUri } = require('../lib/media');

const LONG_S = 12; // file:// WebM: play, pause, resume and seek happen well before its end
const WEBM_S = 6;
const MP4_S = 5;

let env;
let http;
const clip = {};

let media;
const TOKEN = 'e2e-player-token';

before(async () => {
  // The clips first: Fluo starts once they are ready.
  media = tmpDir('fluo-e2e-player-media-');
  const t0 = Date.now();
  clip.long = await makeClip(path.join(media, 'long.webm'), { seconds: LONG_S });
  clip.webm = await makeClip(path.join(media, 'sample.webm'), { seconds: WEBM_S });
  clip.mp4 = await makeClip(path.join(media, 'sample.mp4'), { seconds: MP4_S, codecs: 'h264' });
  log(`player: clips made in ${Date.now() - t0} ms in ${media}`);
  http = await serveDir(media);
  env = await setup('player', {
    token: TOKEN,
    webArgs: () => ['--media-dir', media, '--player-any-uri', '--access-token', TOKEN],
  });
});
after(async () => {
  if (http) await http.close();
  if (env) await env.teardown();
  removeTmpDir(media);
});

async function waitEvent(page, id, ms, count = 1) {
  await waitFor(async () => {
    const st = await pageState(page);
    if (st.error) throw new Error(`waiting for ${id}: the page shows an error: "${st.error}" (status "${st.status}")`);
    return page.evaluate(([want, n]) => window.fluoEvents.filter((e) => e.id === want).length >= n, [id, count]);
  }, ms, `${id} on the page`);
}

// The pipelines of the page are released (those left by an earlier failed test aside).
async function noPipelinesLeft(page) {
  const left = async () => (await listPipelines(env.fluo.authUrl)).filter((id) => !page.pipelinesBefore.includes(id));
  await waitFor(async () => (await left()).length === 0, 5000, 'the pipeline to be released')
    .catch(async (e) => {
      throw new Error(`${e.message}: still ${JSON.stringify(await left())}`);
    });
}

async function openPlayer(name, uri) {
  const page = await openPage(env, name, `/player.html?uri=${encodeURIComponent(uri)}`);
  page.pipelinesBefore = await listPipelines(env.fluo.authUrl);
  assert.equal(await page.inputValue('#uri'), uri);
  return page;
}

async function videoInfoShown(page, seconds) {
  await waitEvent(page, 'videoInfo', 10000);
  const info = await page.evaluate(() => window.fluoVideoInfo);
  log(`player: VideoInfo ${JSON.stringify(info)}`);
  assert.ok(Math.abs(info.duration - seconds * 1000) <= 200, `duration ${info.duration} ms for a ${seconds} s clip`);
  assert.equal(info.isSeekable, true, 'a file is seekable');
  assert.match(await page.textContent('#videoInfo'), new RegExp(`duration ${seconds}\\.\\d s, seekable`));
}

// Plays to the end: EndOfStream arrives no sooner than the clip could be played.
async function playsToTheEnd(page, seconds) {
  await waitEvent(page, 'playEnd', seconds * 1000 + 15000);
  const span = await page.evaluate(() => {
    const at = (id) => window.fluoEvents.find((e) => e.id === id).at;
    return at('playEnd') - at('playing');
  });
  log(`player: EndOfStream ${Math.round(span)} ms after play() for a ${seconds} s clip`);
  assert.ok(span >= (seconds - 1) * 1000, `EndOfStream after ${span} ms`);
  assert.equal(await page.textContent('#status'), 'end of stream');
  assert.equal(await page.isEnabled('#play'), true, 'Play is enabled again');
}

test('player: the web app offers its sample clips over http:// and as file:// paths', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'player-samples', '/player.html');
    await waitFor(async () => (await page.$$('#preset option')).length === 5, 10000, 'four sample URIs in #preset');
    const options = await page.$$eval('#preset option', (os) => os.slice(1).map((o) => ({ value: o.value, text: o.textContent })));
    log(`player: samples ${JSON.stringify(options)}`);
    const values = options.map((o) => o.value);
    assert.ok(values.includes(fileUri(clip.webm)) && values.includes(fileUri(clip.mp4)), JSON.stringify(values));
    const httpSample = values.find((v) => /^http:\/\/127\.0\.0\.1:\d+\/media\/sample\.webm$/.test(v));
    assert.ok(httpSample, JSON.stringify(values));
    assert.equal(await page.inputValue('#uri'), httpSample, 'the default URI is the WebM sample over http');
    const r = await fetch(httpSample, { headers: { Range: 'bytes=0-99' } });
    assert.equal(r.status, 206);
    assert.equal((await r.arrayBuffer()).byteLength, 100);
    await page.selectOption('#preset', fileUri(clip.mp4));
    assert.equal(await page.inputValue('#uri'), fileUri(clip.mp4));
  }));

test('player: WebM file: play, VideoInfo, pause, resume, stop', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPlayer('player-webm', fileUri(clip.long));
    await page.click('#play');
    await assertVideoPlaying(page, '#video', { label: 'player WebM file #video' });
    await remoteStreamsCheck(page, 'player WebM file');
    logTimings('player WebM file', await pageTimings(page, 'video'));
    await videoInfoShown(page, LONG_S);
    await waitEvent(page, 'position', 5000);

    // Pause: the picture stops.
    await page.click('#pause');
    await waitEvent(page, 'paused', 5000);
    assert.equal(await page.textContent('#status'), 'paused');
    await sleep(500);
    const p1 = await sample(page, '#video');
    await sleep(1500);
    const p2 = await sample(page, '#video');
    log(`player: frames while paused ${p1.totalVideoFrames} -> ${p2.totalVideoFrames}`);
    assert.ok(p2.totalVideoFrames - p1.totalVideoFrames <= 5, `video went on while paused: ${p1.totalVideoFrames} -> ${p2.totalVideoFrames}`);

    // Resume: it moves again.
    await page.click('#play');
    await waitEvent(page, 'playing', 5000, 2);
    await assertVideoPlaying(page, '#video', { label: 'player WebM file #video after resume' });

    await page.click('#stop');
    assert.equal(await page.textContent('#status'), 'stopped');
    await noPipelinesLeft(page);
  }));

// Plays the long clip, seeks with the slider to `fromMs` (unless null) then to `toMs`: the
// position shown follows and the picture moves on after each seek.
async function seekScenario(name, steps) {
  const page = await openPlayer(name, fileUri(clip.long));
  try {
    await page.click('#play');
    await waitEvent(page, 'videoInfo', 20000);
    await waitFor(() => page.evaluate(() => window.fluoTimings['firstFrame:video'] !== undefined), 10000, 'a first frame');
    assert.equal(await page.isEnabled('#seek'), true, 'the seek control is enabled for a seekable file');
    for (const ms of steps) {
      const before = await page.textContent('#position');
      await page.$eval('#seek', (el, value) => {
        el.value = String(value);
        el.dispatchEvent(new Event('change'));
      }, ms);
      // The position polled after the seek is within a second and a half of the target.
      await waitFor(async () => {
        const shown = parseFloat(await page.textContent('#position')) * 1000;
        return shown >= ms - 200 && shown <= ms + 1500;
      }, 5000, `the position to show ${ms} ms`).catch(async (e) => {
        throw new Error(`${e.message}: the page shows ${await page.textContent('#position')} (was ${before})`);
      });
      log(`player: position ${before} -> ${await page.textContent('#position')} after seeking to ${ms} ms`);
      await assertVideoPlaying(page, '#video', { label: `player WebM file #video after seeking to ${ms} ms` });
    }
    await page.click('#stop');
    await noPipelinesLeft(page);
  } catch (e) {
    await page.click('#stop').catch(() => {});
    throw e;
  }
}

test('player: seeking forward with the slider jumps there and the picture moves on', { timeout: 60000 }, () =>
  withDiagnostics(env, () => seekScenario('player-seek-forward', [5000])));

// Server bug: after a seek backwards the position moves on from the target but Chromium gets
// no new frame (seen: 0 decoded frames in 2 s after seeking from 5.1 s back to 1 s).
test('player: seeking backward with the slider jumps there and the picture moves on', {
  timeout: 60000,
}, () => seekScenario('player-seek-backward', [6000, 1000]));

test('player: MP4 file (H.264 + AAC) plays to EndOfStream', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPlayer('player-mp4', fileUri(clip.mp4));
    await page.click('#play');
    await assertVideoPlaying(page, '#video', { label: 'player MP4 file #video' });
    await remoteStreamsCheck(page, 'player MP4 file');
    logTimings('player MP4 file', await pageTimings(page, 'video'));
    await videoInfoShown(page, MP4_S);
    await playsToTheEnd(page, MP4_S);
    await page.click('#stop');
    await noPipelinesLeft(page);
  }));

test('player: the WebM clip over http:// from a local HTTP server plays to EndOfStream', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const uri = `${http.base}/sample.webm`;
    const page = await openPlayer('player-http', uri);
    const before = http.requests.length;
    await page.click('#play');
    await assertVideoPlaying(page, '#video', { label: 'player WebM over http #video' });
    logTimings('player WebM over http', await pageTimings(page, 'video'));
    assert.ok(http.requests.slice(before).some((r) => r.url === '/sample.webm'), `the media server fetched the clip: ${JSON.stringify(http.requests)}`);
    await videoInfoShown(page, WEBM_S);
    await playsToTheEnd(page, WEBM_S);
    await page.click('#stop');
    await noPipelinesLeft(page);
  }));

test('player: a bad URI and a missing file are reported in #error', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPlayer('player-errors', 'file://relative/clip.webm');
    const errorShown = () => waitFor(async () => (await page.textContent('#error')) || null, 10000, 'an error in #error');
    await page.click('#play');
    assert.match(await errorShown(), /code 40107/);
    assert.equal(await page.isEnabled('#play'), true, 'Play is enabled again');

    await page.fill('#uri', fileUri(path.join(media, 'missing.webm')));
    await page.evaluate(() => {
      document.getElementById('error').textContent = '';
    });
    await page.click('#play');
    assert.match(await errorShown(), /code 40600/);
    await noPipelinesLeft(page);
  }));

test('player: the media server refuses a client without its token; the web app passes --access-token', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    const status = await new Promise((resolve) => {
      const ws = new WebSocket(env.fluo.url);
      ws.on('open', () => {
        ws.close();
        resolve('open');
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      ws.on('error', () => resolve('error'));
    });
    assert.equal(status, 401, 'no token: HTTP 401 at the upgrade');
    // The app's own client got in (every test above played through it); one more play.
    const page = await openPlayer('player-token', fileUri(clip.webm));
    await page.click('#play');
    await assertVideoPlaying(page, '#video', { label: 'player with a token #video' });
    await page.click('#stop');
    await noPipelinesLeft(page);
  }));

test('player: without --player-any-uri the app plays its sample clips and refuses other URIs', { timeout: 60000 }, () =>
  withDiagnostics(env, async () => {
    const dir = tmpDir('fluo-e2e-player-samples-only-');
    const web = await startWeb(dir, env.fluo.url, ['--media-dir', media, '--access-token', TOKEN]);
    const only = { ...env, web };
    try {
      for (const uri of [fileUri(clip.long), `${http.base}/sample.webm`, 'file:///etc/passwd']) {
        const page = await openPage(only, 'player-samples-only-refused', `/player.html?uri=${encodeURIComponent(uri)}`);
        const before = await listPipelines(env.fluo.authUrl);
        await page.click('#play');
        const error = await waitFor(async () => (await page.textContent('#error')) || null, 10000, 'an error in #error');
        assert.match(error, /plays only its sample clips .*--player-any-uri/, `${uri}: ${error}`);
        assert.deepEqual(await listPipelines(env.fluo.authUrl), before, `${uri}: no pipeline was created`);
        await page.close();
      }
      const page = await openPage(only, 'player-samples-only', `/player.html?uri=${encodeURIComponent(fileUri(clip.webm))}`);
      page.pipelinesBefore = await listPipelines(env.fluo.authUrl);
      await page.click('#play');
      await assertVideoPlaying(page, '#video', { label: 'player sample only #video' });
      await page.click('#stop');
      await noPipelinesLeft(page);
    } finally {
      await web.stop();
      removeTmpDir(dir);
    }
  }));
