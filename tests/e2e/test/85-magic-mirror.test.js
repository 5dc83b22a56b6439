'use strict';
// e2e: alone (its assertions compare timings: run with no other file at once)
// magic-mirror: Kurento's Magic Mirror tutorial on Fluo. Chromium's fake camera plays a
// y4m of the compat suite's synthetic face (tests/compat/test/face.js: a cartoon that
// OpenCV's frontal-face cascade detects) moving about (160, 150); the WebRtcEndpoint's
// video goes through a FaceOverlayFilter (setOverlayedImage(hat, -0.35, -1.2, 1.6, 1.6))
// and back to it. The returned video shows the hat's red above the face, where the camera
// shows grey.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { setup, withDiagnostics, waitFor, listPipelines, log } = require('../lib/env');
const { assertVideoPlaying, pixelAt } = require('../lib/video');
const { openPage } = require('../lib/pages');
const { faceClip } = require('../../compat/test/face');

let env;
let camDir;
before(async () => {
  camDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-e2e-face-'));
  const y4m = await faceClip(path.join(camDir, 'face.y4m'), {
    // Left to right over 3.3 s, looped. The check that the picture moves (lib/video.js) compares
    // two samples 2.0-2.4 s apart: a loop of 2.2 s once gave it the same picture twice (a
    // fresh-clone run: currentTime 2.198 -> 4.386, 0.01 % of pixels changed, "frozen").
    seconds: 3.3, y4m: true, at: (t) => ({ x: 145 + 30 * (t / 3.3), y: 150 }),
  });
  env = await setup('magic-mirror', { browserArgs: () => [`--use-file-for-fake-video-capture=${y4m}`] });
});
after(async () => {
  if (env) await env.teardown();
  if (camDir) fs.rmSync(camDir, { recursive: true, force: true });
});

// The hat's red (200, 30, 40), within the codec's error.
const red = (p) => p && p[0] > 140 && p[1] < 90 && p[2] < 100;

test('magic-mirror: the video comes back with the hat above the face', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'magic-mirror', '/magic-mirror.html');
    await page.click('#start');
    await assertVideoPlaying(page, '#videoInput', { label: 'magic-mirror local #videoInput' });
    await assertVideoPlaying(page, '#videoOutput', { label: 'magic-mirror remote #videoOutput' });
    // Above the face (its top is near y 100): grey in the camera, the hat's brim and crown
    // in what comes back.
    const above = { x: 160, y: 75 };
    const local = await pixelAt(page, '#videoInput', above);
    assert.ok(!red(local), `the camera has no hat: ${local}`);
    const remote = await waitFor(async () => {
      const p = await pixelAt(page, '#videoOutput', above);
      return red(p) ? p : null;
    }, 20000, 'the hat above the face in the returned video');
    const beside = await pixelAt(page, '#videoOutput', { x: 20, y: 75 });
    assert.ok(!red(beside), `no hat away from the face: ${beside}`);
    log(`magic-mirror: above the face ${local} in the camera, ${remote} returned; beside it ${beside}`);
    await page.click('#stop');
    await waitFor(async () => ((await listPipelines(env.fluo.url)).length === 0 ? true : null), 5000,
      'the pipeline to be released after Stop');
  }));
