'use strict';
// Checks that a <video> element really plays a live, moving picture.
//
//   await assertVideoPlaying(page, '#videoOutput', { label, timeoutMs })
//
// Within `timeoutMs` (default 20 s) the video must get videoWidth > 0 and decode
// SETTLE_FRAMES frames; then two samples are taken INTERVAL_MS apart, and between them:
//   - currentTime advances,
//   - getVideoPlaybackQuality().totalVideoFrames increases,
//   - both pictures (drawn into a canvas, SAMPLE_W x SAMPLE_H) have a mean luma above
//     MIN_MEAN_LUMA (not black),
//   - the pictures differ: at least MIN_CHANGED_FRACTION of the pixels changed luma by
//     more than CHANGED_DELTA (not frozen; Chromium's fake camera animates).
// While waiting, a non-empty #error on the page fails the check at once with its text.
// Returns (and logs) the measured values.
//
//   await pixelAt(page, '#videoOutput', { x, y })
//
// The colour [r, g, b] at (x, y) of the video's current picture drawn at PIXEL_W x PIXEL_H
// (320x240), or null before its first frame: where a filter test looks for what it drew.

const assert = require('node:assert/strict');
const { log, sleep } = require('./env');

const INTERVAL_MS = 2000;
const SAMPLE_W = 160;
const SAMPLE_H = 120;
const MIN_MEAN_LUMA = 20; // of 255
const CHANGED_DELTA = 10; // of 255
const MIN_CHANGED_FRACTION = 0.001;
// The first sample is taken once the element has decoded this many frames: a decoder's very
// first output can legitimately be a blank frame while the stream starts.
const SETTLE_FRAMES = 10;

// Runs in the page.
function sampleInPage({ selector, w, h }) {
  const v = document.querySelector(selector);
  if (!v) return { missing: true };
  const q = typeof v.getVideoPlaybackQuality === 'function' ? v.getVideoPlaybackQuality() : null;
  const s = {
    videoWidth: v.videoWidth,
    videoHeight: v.videoHeight,
    currentTime: v.currentTime,
    readyState: v.readyState,
    paused: v.paused,
    totalVideoFrames: q ? q.totalVideoFrames : null,
    droppedVideoFrames: q ? q.droppedVideoFrames : null,
    luma: null,
    meanLuma: null,
  };
  if (v.videoWidth > 0) {
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(v, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    const luma = new Array(w * h);
    let sum = 0;
    for (let i = 0, p = 0; i < d.length; i += 4, p++) {
      const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      luma[p] = Math.round(y);
      sum += y;
    }
    s.luma = luma;
    s.meanLuma = sum / (w * h);
  }
  return s;
}

async function pageState(page) {
  return page.evaluate(() => ({
    status: (document.getElementById('status') || {}).textContent || '',
    error: (document.getElementById('error') || {}).textContent || '',
  }));
}

async function sample(page, selector) {
  return page.evaluate(sampleInPage, { selector, w: SAMPLE_W, h: SAMPLE_H });
}

function compare(a, b) {
  let changed = 0;
  let absSum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    absSum += d;
    if (d > CHANGED_DELTA) changed++;
  }
  return { changedFraction: changed / a.length, meanAbsDiff: absSum / a.length };
}

const round = (x, n = 2) => (x === null || x === undefined ? x : Number(x.toFixed(n)));

async function assertVideoPlaying(page, selector, { label = selector, timeoutMs = 20000 } = {}) {
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  let s1;
  for (;;) {
    const st = await pageState(page);
    if (st.error) {
      assert.fail(`${label}: the page shows an error: "${st.error}" (status "${st.status}")`);
    }
    s1 = await sample(page, selector);
    assert.ok(!s1.missing, `${label}: no element ${selector}`);
    if (s1.videoWidth > 0 && s1.totalVideoFrames >= SETTLE_FRAMES) break;
    if (Date.now() > deadline) {
      const { luma, ...rest } = s1;
      assert.fail(
        `${label}: no decoded video within ${timeoutMs} ms: ${JSON.stringify(rest)} (status "${st.status}")`,
      );
    }
    await sleep(100);
  }
  const firstFrameWaitMs = Date.now() - t0;
  await sleep(INTERVAL_MS);
  const s2 = await sample(page, selector);
  const st = await pageState(page);
  const diff = s1.luma && s2.luma ? compare(s1.luma, s2.luma) : { changedFraction: 0, meanAbsDiff: 0 };
  const result = {
    label,
    width: s2.videoWidth,
    height: s2.videoHeight,
    framesBefore: s1.totalVideoFrames,
    framesAfter: s2.totalVideoFrames,
    fps: round(((s2.totalVideoFrames - s1.totalVideoFrames) * 1000) / INTERVAL_MS, 1),
    dropped: s2.droppedVideoFrames,
    currentTimeBefore: round(s1.currentTime, 3),
    currentTimeAfter: round(s2.currentTime, 3),
    lumaBefore: round(s1.meanLuma, 1),
    lumaAfter: round(s2.meanLuma, 1),
    changedPixels: round(diff.changedFraction, 4),
    meanAbsDiff: round(diff.meanAbsDiff, 2),
    waitedForVideoMs: firstFrameWaitMs,
  };
  log(
    `video ${label}: ${result.width}x${result.height}, frames ${result.framesBefore}->${result.framesAfter} ` +
      `(${result.fps} fps over ${INTERVAL_MS} ms, dropped ${result.dropped}), currentTime ` +
      `${result.currentTimeBefore}->${result.currentTimeAfter}, luma ${result.lumaBefore}/${result.lumaAfter}, ` +
      `changed pixels ${(result.changedPixels * 100).toFixed(2)}% (mean |diff| ${result.meanAbsDiff})`,
  );
  const ctx = `${label}: ${JSON.stringify(result)} (status "${st.status}", error "${st.error}")`;
  assert.equal(st.error, '', `${label}: the page shows an error: ${ctx}`);
  assert.ok(s2.videoWidth > 0, `videoWidth dropped to 0: ${ctx}`);
  assert.ok(s2.currentTime > s1.currentTime, `currentTime did not advance: ${ctx}`);
  assert.ok(s2.totalVideoFrames > s1.totalVideoFrames, `no new decoded frames: ${ctx}`);
  assert.ok(s1.meanLuma > MIN_MEAN_LUMA && s2.meanLuma > MIN_MEAN_LUMA, `picture is black: ${ctx}`);
  assert.ok(diff.changedFraction >= MIN_CHANGED_FRACTION, `picture is frozen: ${ctx}`);
  return result;
}

// Timings recorded by the page (web/public/common.js), relative to the click.
async function pageTimings(page, videoId) {
  const t = await page.evaluate(() => window.fluoTimings);
  const rel = (k) => (t[k] !== undefined && t.click !== undefined ? Math.round(t[k] - t.click) : null);
  return {
    offerSent: rel('offerSent'),
    answer: rel('answer'),
    iceConnected: rel('iceConnected'),
    connected: rel('connected'),
    firstFrame: rel(`firstFrame:${videoId}`),
  };
}

function logTimings(label, t) {
  log(
    `timing ${label}: click -> first decoded frame ${t.firstFrame} ms ` +
      `(offer sent ${t.offerSent}, answer ${t.answer}, ICE connected ${t.iceConnected}, ` +
      `peer connected ${t.connected})`,
  );
}

// The picture of `selector` cut into a `cols` x `rows` grid: each cell's mean colour and
// its luma (SAMPLE_W x SAMPLE_H for the whole picture). Runs in the page.
function cellsInPage({ selector, w, h, cols, rows }) {
  const v = document.querySelector(selector);
  if (!v || !(v.videoWidth > 0)) return null;
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(v, 0, 0, w, h);
  const d = ctx.getImageData(0, 0, w, h).data;
  const cw = Math.floor(w / cols);
  const ch = Math.floor(h / rows);
  const cells = [];
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < cols; col++) {
      const sum = [0, 0, 0];
      const luma = [];
      for (let y = row * ch; y < (row + 1) * ch; y++) {
        for (let x = col * cw; x < (col + 1) * cw; x++) {
          const i = (y * w + x) * 4;
          sum[0] += d[i];
          sum[1] += d[i + 1];
          sum[2] += d[i + 2];
          luma.push(Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]));
        }
      }
      cells.push({ rgb: sum.map((v2) => Math.round(v2 / (cw * ch))), luma });
    }
  }
  return { width: v.videoWidth, height: v.videoHeight, cells };
}

async function sampleCells(page, selector, cols, rows) {
  return page.evaluate(cellsInPage, { selector, w: SAMPLE_W, h: SAMPLE_H, cols, rows });
}

// Every video matching `selector` at once, small (40x30): its id, decoded frames,
// currentTime, mean colour and luma. One call for many videos: light on a loaded machine.
async function sampleVideos(page, selector) {
  return page.evaluate((sel) => {
    const c = document.createElement('canvas');
    c.width = 40;
    c.height = 30;
    const ctx = c.getContext('2d', { willReadFrequently: true });
    return [...document.querySelectorAll(sel)].map((v) => {
      const q = v.getVideoPlaybackQuality();
      const out = { id: v.id, width: v.videoWidth, frames: q.totalVideoFrames, currentTime: v.currentTime, rgb: null, luma: null };
      if (!(v.videoWidth > 0)) return out;
      ctx.drawImage(v, 0, 0, 40, 30);
      const d = ctx.getImageData(0, 0, 40, 30).data;
      const sum = [0, 0, 0];
      out.luma = [];
      for (let i = 0; i < d.length; i += 4) {
        sum[0] += d[i];
        sum[1] += d[i + 1];
        sum[2] += d[i + 2];
        out.luma.push(Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]));
      }
      out.rgb = sum.map((x) => Math.round(x / 1200));
      return out;
    });
  }, selector);
}

// Freeze monitor: every 40 ms the page draws `selector` into an 80x60 canvas and notes when
// the picture changed (at least 3 pixels by more than 8 of 255 in luma) and its mean colour.
// A frozen picture, or no picture, makes no change. Runs in the page; state on window.
function startMonitorInPage({ selector, key }) {
  const v = document.querySelector(selector);
  const c = document.createElement('canvas');
  c.width = 80;
  c.height = 60;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  const state = { changes: [], colours: [], started: performance.now(), last: null, timer: null };
  window.fluoMonitors = window.fluoMonitors || {};
  window.fluoMonitors[key] = state;
  state.timer = setInterval(() => {
    if (!(v.videoWidth > 0)) return;
    ctx.drawImage(v, 0, 0, 80, 60);
    const d = ctx.getImageData(0, 0, 80, 60).data;
    const luma = new Uint8Array(80 * 60);
    const sum = [0, 0, 0];
    for (let i = 0, p = 0; i < d.length; i += 4, p++) {
      luma[p] = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      sum[0] += d[i];
      sum[1] += d[i + 1];
      sum[2] += d[i + 2];
    }
    const now = performance.now();
    let changed = 0;
    if (state.last) for (let p = 0; p < luma.length; p++) if (Math.abs(luma[p] - state.last[p]) > 8) changed++;
    if (!state.last || changed >= 3) state.changes.push(now);
    state.last = luma;
    state.colours.push([now, sum.map((x) => Math.round(x / (80 * 60)))]);
    if (state.colours.length > 500) state.colours.splice(0, 100);
  }, 40);
}

async function startFreezeMonitor(page, selector, key = selector) {
  await page.evaluate(startMonitorInPage, { selector, key });
}

// Since page time `since` (performance.now(), default: the monitor's start): the longest time
// without a change of picture (up to now), the number of changes and the latest mean colour.
async function freezeReport(page, key, since = null) {
  return page.evaluate(({ key: k, since: s }) => {
    const st = window.fluoMonitors[k];
    const now = performance.now();
    const from = s === null ? st.started : s;
    const times = st.changes.filter((t) => t >= from);
    let longest = 0;
    let prev = from;
    for (const t of [...times, now]) {
      longest = Math.max(longest, t - prev);
      prev = t;
    }
    const last = st.colours[st.colours.length - 1];
    return { now, from, changes: times.length, longestFreezeMs: Math.round(longest), colour: last ? last[1] : null };
  }, { key, since });
}

const PIXEL_W = 320;
const PIXEL_H = 240;

// Runs in the page.
function pixelInPage({ selector, x, y, w, h }) {
  const v = document.querySelector(selector);
  if (!v || !(v.videoWidth > 0)) return null;
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(v, 0, 0, w, h);
  const d = ctx.getImageData(x, y, 1, 1).data;
  return [d[0], d[1], d[2]];
}

async function pixelAt(page, selector, { x, y }) {
  return page.evaluate(pixelInPage, { selector, x, y, w: PIXEL_W, h: PIXEL_H });
}

module.exports = {
  pixelAt,
  assertVideoPlaying,
  pageState,
  pageTimings,
  logTimings,
  sample,
  sampleCells,
  sampleVideos,
  startFreezeMonitor,
  freezeReport,
};
