'use strict';
// e2e: alone (its assertions compare timings: run with no other file at once)
// Crash containment next to a live call (issue 16, docs/workers.md "Tests"): a hello-world
// WebRTC loopback in Chromium (pipeline A, in the server's process) and, in other pipelines,
// a PlayerEndpoint with a FluoTestCrash whose job crashes the media worker hosting them:
// abort, SIGSEGV, then allocation without bound until the worker's memory limit. For each:
//   - the loopback's remote video never freezes longer than MAX_GAP_MS (the gaps between the
//     frames the page presents, requestVideoFrameCallback, from 1 s before the crash to 1 s
//     after the new player's media),
//   - the crashed pipeline's client (the official kurento-client) gets the Error events of
//     both elements (40003, PLAYER_ERROR and GSTREAMER_FILTER_ERROR, the cause and the dead
//     worker's pid), and the crash request is answered (abort, segv: 40003; oom: at once),
//   - a new PlayerEndpoint in a new pipeline, on the restarted worker (another pid: the
//     server runs one worker), plays: MediaFlowOut on the player and MediaFlowIn on a
//     recorder it feeds.
// FluoTestCrash exists only in the `fluo-test-elements` binary (fluo-server's test-elements
// feature), built here: one cargo build in the suite's target dir.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { ROOT, setup, withDiagnostics, waitFor, log, sleep, tmpDir, removeTmpDir } = require('../lib/env');
const { assertVideoPlaying } = require('../lib/video');
const { openPage } = require('../lib/pages');
const { makeClip, fileUri } = require('../lib/media');

const kurento = require(path.join(ROOT, 'web/node_modules/kurento-client'));

// FluoTestCrash for kurento-client, as a KMS module's client code registers its classes:
// a MediaElement with the `mode` constructor parameter and the `crash()` method.
function FluoTestCrash() {
  FluoTestCrash.super_.call(this);
}
const MediaElement = kurento.register.abstracts.MediaElement;
require('node:util').inherits(FluoTestCrash, MediaElement);
FluoTestCrash.prototype.crash = function crash() {
  return this._invoke(undefined, 'crash');
};
FluoTestCrash.constructorParams = {
  mediaPipeline: { type: 'kurento.MediaPipeline', required: true },
  mode: { type: 'String', required: true },
};
FluoTestCrash.events = MediaElement.events;
kurento.register('FluoTestCrash', FluoTestCrash);

const MAX_GAP_MS = 200;
const MEMORY_LIMIT = '256M';
const TARGET_DIR = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
const BIN = path.join(TARGET_DIR, 'debug', 'fluo-test-elements');

// What each mode's death looks like in the Error events' description.
const CAUSES = {
  abort: /the worker process aborted \(SIGABRT/,
  segv: /SIGSEGV/,
  // The memory limit (RLIMIT_DATA) makes an allocation fail, and the worker aborts; the
  // kernel's OOM killer would have sent SIGKILL.
  oom: /the worker process aborted \(SIGABRT: [^)]*memory limit/,
};

let env;
let media;
let clip;
let skipReason = null;

function buildServer() {
  const cargo = process.env.CARGO || 'cargo';
  const args = ['build', '-p', 'fluo-server', '--features', 'test-elements', '--bin', 'fluo-test-elements'];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    execFile(cargo, args, { cwd: ROOT, maxBuffer: 64 << 20 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${cargo} ${args.join(' ')}: ${stderr.trim().split('\n').slice(-30).join('\n')}`));
      else {
        log(`worker-crash: ${cargo} ${args.join(' ')} took ${Date.now() - t0} ms`);
        resolve();
      }
    });
  });
}

before(async () => {
  if (process.env.E2E_MEDIA_WS_URI) {
    // An external media server (a KMS) has no FluoTestCrash.
    skipReason = 'E2E_MEDIA_WS_URI: the crash element exists only in fluo-test-elements';
    return;
  }
  await buildServer();
  media = tmpDir('fluo-e2e-worker-crash-media-');
  // Each player plays it for a few seconds.
  clip = await makeClip(path.join(media, 'clip.webm'), { seconds: 10 });
  env = await setup('worker-crash', {
    bin: BIN,
    fluoArgs: () => ['--workers', '1', '--worker-memory-limit', MEMORY_LIMIT],
  });
});
after(async () => {
  if (env) await env.teardown();
  removeTmpDir(media);
});

// The server's log (its workers' stderr included), without colours.
function logText() {
  // eslint-disable-next-line no-control-regex
  return fs.readFileSync(env.fluo.logFile, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
}

// The pid of the media worker hosting element `id`, from the server's log ("element runs in
// media worker", as an operator finds it).
function workerPid(id) {
  const line = logText().split('\n').find((l) => l.includes('element runs in media worker') && l.includes(id));
  if (!line) return null;
  const m = / pid=(\d+)/.exec(line);
  return m ? Number(m[1]) : null;
}

// Collects `event`s of `obj` (kurento-client objects).
function collect(obj, event) {
  const seen = [];
  obj.on(event, (e) => seen.push({ ...e, at: Date.now() }));
  return seen;
}

// Starts counting the frames the page presents on #videoOutput: their presentation times
// (the page's clock) go into window.fluoFrames.
async function recordFrames(page) {
  await page.evaluate(() => {
    const v = document.getElementById('videoOutput');
    window.fluoFrames = [];
    const onFrame = (_now, meta) => {
      window.fluoFrames.push({ t: meta.presentationTime, n: meta.presentedFrames, r: meta.receiveTime });
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
  });
}

// The frames presented from page time `from` on: how many, and the longest gap between two
// (from `from` to the first one included).
async function framesSince(page, from) {
  return page.evaluate((t0) => {
    const fs = window.fluoFrames.filter((f) => f.t >= t0);
    let maxGap = fs.length ? fs[0].t - t0 : Infinity;
    let at = t0;
    // receiveTime: when the frame's last packet arrived (WebRTC), apart from the page's
    // rendering.
    let maxRecvGap = 0;
    for (let i = 1; i < fs.length; i++) {
      const g = fs[i].t - fs[i - 1].t;
      if (g > maxGap) {
        maxGap = g;
        at = fs[i - 1].t;
      }
      if (fs[i].r !== undefined && fs[i - 1].r !== undefined) maxRecvGap = Math.max(maxRecvGap, fs[i].r - fs[i - 1].r);
    }
    const spanMs = fs.length ? fs[fs.length - 1].t - t0 : 0;
    return {
      frames: fs.length,
      presented: fs.length ? fs[fs.length - 1].n - fs[0].n + 1 : 0,
      spanMs: Math.round(spanMs),
      maxGapMs: Math.round(maxGap * 10) / 10,
      maxGapAtMs: Math.round(at - t0),
      maxReceiveGapMs: Math.round(maxRecvGap * 10) / 10,
      now: performance.now(),
    };
  }, from);
}

// A player of the clip feeding a recorder in a new pipeline: resolves once media flows out
// of the player and into the recorder; returns the pipeline, the player's id and the time.
async function newPlayerPlays(client, label) {
  const t0 = Date.now();
  const pipeline = await client.create('MediaPipeline');
  const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
  const recorder = await pipeline.create('RecorderEndpoint', {
    uri: fileUri(path.join(media, `${label}.webm`)),
    mediaProfile: 'WEBM',
  });
  const out = collect(player, 'MediaFlowOutStateChanged');
  const into = collect(recorder, 'MediaFlowInStateChanged');
  const errors = collect(player, 'Error');
  await player.connect(recorder);
  await recorder.record();
  await player.play();
  const flowing = (seen) => seen.some((e) => e.state === 'FLOWING' && e.mediaType === 'VIDEO');
  await waitFor(() => {
    if (errors.length) throw new Error(`${label}: the new player's Error event: ${JSON.stringify(errors)}`);
    return flowing(out) && flowing(into);
  }, 15000, `${label}: video flowing out of the new player and into its recorder`);
  return { pipeline, player, ms: Date.now() - t0 };
}

test('worker crashes (abort, segv, oom) next to a loopback call: the call goes on, errors reach the client, a new player plays', { timeout: 240000 }, async (t) => {
  if (skipReason) {
    if (process.env.CI === 'true') assert.fail(`skipped under CI: ${skipReason}`);
    t.skip(skipReason);
    return;
  }
  await withDiagnostics(env, async () => {
    const t0 = Date.now();
    const step = (what) => log(`worker-crash: ${what} at ${Date.now() - t0} ms`);
    const page = await openPage(env, 'hello-world', '/hello-world.html');
    await page.click('#start');
    await assertVideoPlaying(page, '#videoOutput', { label: 'worker-crash loopback #videoOutput' });
    await recordFrames(page);
    step('the loopback plays');

    const client = await kurento(env.fluo.url);
    step('kurento-client connected');
    const figures = [];
    try {
      // 'control': the same steps without the crash (the figures of the machine's load).
      for (const run of ['control', 'abort', 'segv', 'oom']) {
        const control = run === 'control';
        const mode = control ? 'abort' : run;
        const pipeline = await client.create('MediaPipeline');
        const player = await pipeline.create('PlayerEndpoint', { uri: fileUri(clip) });
        const crash = await pipeline.create('FluoTestCrash', { mode });
        const playerErrors = collect(player, 'Error');
        const crashErrors = collect(crash, 'Error');
        const out = collect(player, 'MediaFlowOutStateChanged');
        await player.connect(crash);
        await player.play();
        step(`${run}: pipeline B made`);
        await waitFor(() => out.some((e) => e.state === 'FLOWING'), 15000, `${run}: the player's media flowing to FluoTestCrash`);
        step(`${run}: pipeline B's player plays`);
        const pid = workerPid(player.id);
        assert.ok(pid, `${mode}: the player's worker in the log`);
        assert.equal(workerPid(crash.id), pid, `${mode}: FluoTestCrash runs in the player's worker`);

        // 1 s of the call before the crash counts too.
        await sleep(1000);
        const from = (await page.evaluate(() => performance.now())) - 1000;
        const crashedAt = Date.now();
        if (control) {
          const fresh = await newPlayerPlays(client, 'control');
          assert.equal(workerPid(fresh.player.id), pid, 'control: the same worker');
          await sleep(1000);
          const frames = await framesSince(page, from);
          delete frames.now;
          const figure = { mode: 'control (no crash)', newPlayerMs: fresh.ms, ...frames };
          log(`worker-crash control: ${JSON.stringify(figure)}`);
          figures.push(figure);
          assert.equal(playerErrors.length + crashErrors.length, 0, 'control: no Error event');
          await fresh.pipeline.release();
          await pipeline.release();
          continue;
        }
        const reply = crash.crash().then(
          () => ({ ok: true, at: Date.now() }),
          (e) => ({ ok: false, code: e.code, message: e.message, at: Date.now() }),
        );
        await waitFor(() => playerErrors.length && crashErrors.length, 20000, `${mode}: both Error events`);
        const answer = await reply;
        log(`worker-crash ${mode}: crash() answered ${JSON.stringify(answer)} after ${answer.at - crashedAt} ms`);
        if (mode === 'oom') {
          assert.equal(answer.ok, true, `oom: crash() answers at once, the allocation runs on: ${JSON.stringify(answer)}`);
        } else {
          assert.equal(answer.ok, false, `${mode}: crash() never succeeds`);
          assert.equal(answer.code, 40003, JSON.stringify(answer));
          assert.match(answer.message, /The media worker hosting this element ended/);
        }
        const checkError = (e, type) => {
          log(`worker-crash ${mode}: ${type} ${JSON.stringify(e)}`);
          assert.equal(e.errorCode, 40003, JSON.stringify(e));
          assert.equal(e.type, type, JSON.stringify(e));
          assert.match(e.description, CAUSES[mode], JSON.stringify(e));
          assert.match(e.description, new RegExp(`pid ${pid}\\b`), JSON.stringify(e));
          assert.doesNotMatch(e.description, /0x[0-9a-f]{6,}/, 'no address in the text');
        };
        checkError(playerErrors[0], 'PLAYER_ERROR');
        checkError(crashErrors[0], 'GSTREAMER_FILTER_ERROR');
        if (mode === 'oom') {
          // The limit, not the kernel's OOM killer: an allocation failed (the Rust runtime's
          // message on the worker's stderr, in the server's log) and the worker aborted.
          assert.match(logText(), /memory allocation of \d+ bytes failed/, 'oom: an allocation failed at the limit');
        }
        const errorAfter = Math.min(playerErrors[0].at, crashErrors[0].at) - crashedAt;

        const fresh = await newPlayerPlays(client, `after-${mode}`);
        const newPid = workerPid(fresh.player.id);
        assert.ok(newPid && newPid !== pid, `${mode}: the new player runs on the restarted worker (pid ${newPid}, dead ${pid})`);
        await sleep(1000);
        const frames = await framesSince(page, from);
        const figure = { mode, pid, newPid, errorAfterMs: errorAfter, newPlayerMs: fresh.ms, ...frames };
        delete figure.now;
        log(`worker-crash ${mode}: ${JSON.stringify(figure)}`);
        figures.push(figure);
        assert.ok(frames.frames > 0 && frames.spanMs > 1500, `${mode}: the loopback's frames ${JSON.stringify(frames)}`);
        assert.ok(
          frames.maxGapMs <= MAX_GAP_MS,
          `${mode}: the loopback's video froze ${frames.maxGapMs} ms (at ${frames.maxGapAtMs} ms of the window), more than ${MAX_GAP_MS} ms: ${JSON.stringify(frames)}`,
        );
        await fresh.pipeline.release();
        await pipeline.release();
        step(`${mode}: done`);
      }
      // The page's call went on throughout.
      assert.equal(await page.textContent('#error'), '');
      log(`worker-crash figures: ${JSON.stringify(figures)}`);
    } finally {
      client.close();
    }
  });
});
