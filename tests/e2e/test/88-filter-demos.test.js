'use strict';
// chroma-key and qr-reader: the camera through a filter and back, on Fluo. Chromium's fake
// camera plays a y4m of a green field with a QR code (made with qrencode, as compat 17's
// clip) in the middle and a grey square moving along the bottom (so that the picture
// changes).
//   chroma-key: the page's calibration window (10, 10, 40 x 40, in the green) gives the
//     ChromaFilter its key; the video that comes back shows the background image
//     (chroma-background.png: sky at the top) where the camera shows green, and the code's
//     white where it is.
//   chroma-key, Stop while the media server's background image is still being made (a web
//     app of its own, an empty media folder and an ffmpeg that waits 4 s first): nothing is
//     started after the Stop (no pipeline, no more status from the server), and the
//     calibration window's inputs, disabled while the session runs, are editable again.
//   qr-reader: the page lists the CodeFound events the ZBarFilter raises for the code, with
//     zbar's type name and the code's value.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { setup, startWeb, withDiagnostics, waitFor, listPipelines, log, sleep } = require('../lib/env');
const { assertVideoPlaying, pixelAt } = require('../lib/video');
const { openPage } = require('../lib/pages');

const VALUE = 'https://fluo.example/e2e/qr-reader';

const run = (cmd, args) => new Promise((resolve, reject) =>
  execFile(cmd, args, (e, _out, err) => (e ? reject(new Error(`${cmd}: ${err || e.message}`)) : resolve())));

let env;
let camDir;
before(async () => {
  camDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-e2e-filters-'));
  const png = path.join(camDir, 'qr.png');
  const y4m = path.join(camDir, 'camera.y4m');
  await run('qrencode', ['-o', png, '-s', '4', '-m', '4', VALUE]);
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', 'color=c=0x00c800:s=320x240:r=30',
    '-loop', '1', '-i', png,
    '-f', 'lavfi', '-i', 'color=c=0x505050:s=16x16:r=30',
    '-filter_complex', "[0][1]overlay=x=(W-w)/2:y=(H-h)/2-10[a];[a][2]overlay=x='mod(t*120,300)':y=220:shortest=1",
    // 3.3 s, looped: lib/video.js's check that the picture moves compares samples 2.0-2.4 s
    // apart, which a loop of about that length would show as the same picture.
    '-t', '3.3', '-pix_fmt', 'yuv420p', '-f', 'yuv4mpegpipe', y4m]);
  env = await setup('filter-demos', { browserArgs: () => [`--use-file-for-fake-video-capture=${y4m}`] });
});
after(async () => {
  if (env) await env.teardown();
  if (camDir) fs.rmSync(camDir, { recursive: true, force: true });
});

// The field's green (0, 200, 0), the background's sky (110, 180, 240) and white, within the
// codecs' error.
const green = (p) => p && p[1] > 140 && p[0] < 80 && p[2] < 80;
const sky = (p) => p && p[2] > 180 && p[0] > 60 && p[0] < 170 && p[1] > 130;
const white = (p) => p && p.every((c) => c > 200);

async function stop(page) {
  await page.click('#stop');
  await waitFor(async () => ((await listPipelines(env.fluo.url)).length === 0 ? true : null), 5000,
    'the pipeline to be released after Stop');
}

test('chroma-key: the video comes back with the background where the camera shows green', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'chroma-key', '/chroma-key.html');
    await page.click('#start');
    await assertVideoPlaying(page, '#videoInput', { label: 'chroma-key local #videoInput' });
    await assertVideoPlaying(page, '#videoOutput', { label: 'chroma-key remote #videoOutput' });
    // The calibration window is drawn over the camera.
    assert.equal(await page.evaluate(() => getComputedStyle(document.getElementById('window')).display), 'block');
    const at = { x: 300, y: 30 };
    const local = await pixelAt(page, '#videoInput', at);
    assert.ok(green(local), `the camera shows the green field: ${local}`);
    const remote = await waitFor(async () => {
      const p = await pixelAt(page, '#videoOutput', at);
      return sky(p) ? p : null;
    }, 20000, 'the background\'s sky in the returned video');
    // The code's quiet zone (white) is not the key's colour: it stays.
    const zone = await pixelAt(page, '#videoOutput', { x: 100, y: 110 });
    assert.ok(white(zone), `the code's white kept: ${zone}`);
    // The filter's window is fixed while the session runs.
    const inputs = () => page.evaluate(() => ['winX', 'winY', 'winW', 'winH'].map((id) => document.getElementById(id).disabled));
    assert.deepEqual(await inputs(), [true, true, true, true], 'the window\'s inputs disabled while running');
    log(`chroma-key: at ${at.x},${at.y} ${local} in the camera, ${remote} returned; the code's white ${zone}`);
    await stop(page);
    assert.deepEqual(await inputs(), [false, false, false, false], 'the window\'s inputs editable after Stop');
  }));

test('chroma-key: Stop while the background image is being made starts nothing', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    // An ffmpeg that waits 4 s before it runs, and a media folder without the images.
    const real = execFileSync('sh', ['-c', 'command -v ffmpeg']).toString().trim();
    const bin = path.join(camDir, 'slow-bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'ffmpeg'), `#!/bin/sh\nsleep 4\nexec '${real}' "$@"\n`, { mode: 0o755 });
    const media = path.join(camDir, 'media');
    const webDir = path.join(camDir, 'web-slow');
    fs.mkdirSync(webDir);
    const web = await startWeb(webDir, env.fluo.url, ['--media-dir', media], { PATH: `${bin}:${process.env.PATH}` });
    try {
      // Not waiting for the page's images: its preview of the background is being made.
      const page = await openPage({ ...env, web }, 'chroma-key-stop', '/chroma-key.html', { waitUntil: 'domcontentloaded' });
      await page.click('#start');
      // The server has the offer and waits for the images (the page's preview asked first).
      await page.waitForFunction(() => document.getElementById('status').textContent === 'preparing the ChromaFilter',
        null, { timeout: 20000 });
      const background = path.join(media, 'chroma-background.png');
      assert.ok(!fs.existsSync(background), 'the background is still being made when Stop is pressed');
      await page.click('#stop');
      await waitFor(() => fs.existsSync(background), 20000, 'the background image to be made');
      // Time for a start that went on to create its pipeline and answer.
      await sleep(3000);
      assert.deepEqual(await listPipelines(env.fluo.url), [], 'no pipeline after the Stop');
      assert.equal(await page.textContent('#status'), 'stopped');
      assert.equal(await page.textContent('#error'), '');
      assert.deepEqual(await page.evaluate(() => ['winX', 'winY', 'winW', 'winH'].map((id) => document.getElementById(id).disabled)),
        [false, false, false, false]);
      log('chroma-key: Stop while the background was made: nothing started');
      await page.close();
    } catch (err) {
      console.log(`---- web app log (tail, ${web.logFile}) ----\n${web.logTail(60)}`);
      throw err;
    } finally {
      await web.stop();
    }
  }));

test('qr-reader: the code the camera shows reaches the page as CodeFound', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'qr-reader', '/qr-reader.html');
    await page.click('#start');
    await assertVideoPlaying(page, '#videoInput', { label: 'qr-reader local #videoInput' });
    await assertVideoPlaying(page, '#videoOutput', { label: 'qr-reader remote #videoOutput' });
    const codes = await waitFor(async () => {
      const c = await page.evaluate(() => window.fluoCodes);
      return c.length ? c : null;
    }, 20000, 'a CodeFound on the page');
    assert.deepEqual(codes[0], { codeType: 'QR-Code', value: VALUE });
    assert.ok(codes.every((c) => c.value === VALUE), JSON.stringify(codes));
    const listed = await page.textContent('#codes');
    assert.ok(listed.includes(`QR-Code: ${VALUE}`), `listed: ${listed}`);
    log(`qr-reader: ${codes.length} CodeFound on the page`);
    await stop(page);
  }));
