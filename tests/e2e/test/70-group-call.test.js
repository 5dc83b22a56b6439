'use strict';
// group-call page (web/apps/group-call.js): four participants in one browser, each with a
// camera of its own colour and a white square moving at a speed of its own (lib/camera.js).
//   MCU: every page receives one stream, the Composite's grid: 2x2 cells, each showing a
//        different participant's colour, at least 3 of them moving between samples.
//   SFU: every page receives the three others, each in its own <video>, each the right
//        participant's colour, all playing; one leaving is dropped from the others' pages.
// Everyone leaving releases the room's pipeline.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, withDiagnostics, waitFor, listPipelines, log, sleep } = require('../lib/env');
const { assertVideoPlaying, sampleCells, sampleVideos } = require('../lib/video');
const { openPage, remoteStreamsCheck } = require('../lib/pages');
const { useColourCamera, classifyColour } = require('../lib/camera');

const NAMES = ['p0', 'p1', 'p2', 'p3'];

let env;
before(async () => {
  env = await setup('group-call');
});
after(async () => {
  if (env) await env.teardown();
});

// Opens the four pages with their cameras, has them join in this order (without waiting for
// one to be in before the next asks), and waits until all are in.
async function joinAll(room, mode) {
  const pages = [];
  for (let i = 0; i < NAMES.length; i++) {
    const name = NAMES[i];
    let colour;
    const page = await openPage(env, `${mode}-${name}`, `/group-call.html?room=${room}&name=${name}&mode=${mode}`, {
      beforeLoad: async (p) => {
        colour = await useColourCamera(p, i);
      },
    });
    await page.click('#join');
    pages.push({ name, colour, page });
  }
  for (const { name, page } of pages) {
    await waitFor(async () => (await page.textContent('#roomInfo')) !== '' || (await page.textContent('#error')) !== '', 30000, `${name} to join`);
    assert.equal(await page.textContent('#error'), '', `${name}: page error`);
  }
  return pages;
}

async function leaveAll(pages) {
  for (const { page } of pages) await page.click('#leave');
  await waitFor(async () => (await listPipelines(env.fluo.url)).length === 0, 5000, 'the room\'s pipeline to be released')
    .catch(async (e) => {
      throw new Error(`${e.message}: still ${JSON.stringify(await listPipelines(env.fluo.url))}`);
    });
  for (const { page } of pages) await page.close();
}

// Cells whose luma changed between two samples: at least 1% of their pixels by more than
// 24 of 255 (the moving square; coding noise stays below).
function movedCells(a, b) {
  return a.cells.map((cell, i) => {
    let changed = 0;
    for (let p = 0; p < cell.luma.length; p++) if (Math.abs(cell.luma[p] - b.cells[i].luma[p]) > 24) changed++;
    return changed / cell.luma.length >= 0.01;
  });
}

// The page's remote videos are exactly those of `others`; each shows its sender's colour
// and plays: within 45 s each has decoded 10 frames, then over 4 intervals of 1 s each
// decodes new frames (currentTime advancing) in at least 3, and its picture moves (its luma
// changes) in at least 1 (a sender page starved of CPU may redraw its canvas late).
async function assertRemotesPlaying(page, name, others, colourOf) {
  const want = others.map((o) => `remote-${o}`).sort();
  let samples = [];
  await waitFor(async () => {
    samples = [await sampleVideos(page, 'video.remote')];
    const ready = samples[0].filter((v) => v.width > 0 && v.frames >= 10).map((v) => v.id).sort();
    return ready.join() === want.join();
  }, 45000, `${name}: ${want.join(', ')} to play`).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(samples[0].map(({ luma, ...v }) => v))}`);
  });
  for (let k = 0; k < 4; k++) {
    await sleep(1000);
    samples.push(await sampleVideos(page, 'video.remote'));
  }
  for (const id of want) {
    const series = samples.map((s) => s.find((v) => v.id === id));
    let playing = 0;
    let moving = 0;
    for (let k = 1; k < series.length; k++) {
      const [a, b] = [series[k - 1], series[k]];
      if (a.luma.some((l, i) => Math.abs(l - b.luma[i]) > 24)) moving++;
      if (b.frames > a.frames && b.currentTime > a.currentTime) playing++;
    }
    const last = series[series.length - 1];
    const sender = id.slice('remote-'.length);
    log(`SFU ${name} <- ${sender}: ${last.width} px wide, frames ${series[0].frames}->${last.frames}, colour ${JSON.stringify(last.rgb)}, new frames in ${playing} and a moving picture in ${moving} of 4 intervals`);
    assert.equal(classifyColour(last.rgb), colourOf[sender], `${name}: #${id} shows ${JSON.stringify(last.rgb)}, not ${colourOf[sender]}`);
    assert.ok(playing >= 3, `${name}: #${id} decoded new frames in only ${playing} of 4 intervals`);
    assert.ok(moving >= 1, `${name}: #${id} shows a frozen picture (no change in 4 s)`);
  }
}

test('group call, MCU: 4 participants each see the 2x2 grid of all 4, cells moving independently', { timeout: 200000 }, () =>
  withDiagnostics(env, async () => {
    const t0 = Date.now();
    const pages = await joinAll('mcu-room', 'mcu');
    const colours = pages.map((p) => p.colour).sort();
    await Promise.all(pages.map(async ({ name, page }) => {
      await assertVideoPlaying(page, '#mixed', { label: `MCU ${name} #mixed`, timeoutMs: 45000 });
      await remoteStreamsCheck(page, `MCU ${name}`);
    }));
    await Promise.all(pages.map(async ({ name, page }) => {
      // The grid shows all four once the last one's video reached the Composite.
      let samples = [];
      await waitFor(async () => {
        const s = await sampleCells(page, '#mixed', 2, 2);
        const seen = s.cells.map((c) => classifyColour(c.rgb));
        samples = [s];
        return [...seen].sort().join() === colours.join();
      }, 20000, `${name}: the grid to show the four colours`).catch(async (e) => {
        const s = await sampleCells(page, '#mixed', 2, 2);
        throw new Error(`${e.message}: cells ${JSON.stringify(s.cells.map((c) => c.rgb))}`);
      });
      // Five samples 400 ms apart: how often each cell moved.
      const moves = [0, 0, 0, 0];
      for (let k = 0; k < 5; k++) {
        await sleep(400);
        const s = await sampleCells(page, '#mixed', 2, 2);
        movedCells(samples[samples.length - 1], s).forEach((m, i) => {
          if (m) moves[i]++;
        });
        samples.push(s);
      }
      const last = samples[samples.length - 1];
      const seen = last.cells.map((c) => classifyColour(c.rgb));
      log(`MCU ${name}: grid ${last.width}x${last.height}, cells ${JSON.stringify(seen)} ${JSON.stringify(last.cells.map((c) => c.rgb))}, moved in ${JSON.stringify(moves)} of 5 intervals`);
      assert.deepEqual([...seen].sort(), colours, `${name}: each cell a different participant`);
      const moving = moves.filter((m) => m >= 3).length;
      assert.ok(moving >= 3, `${name}: only ${moving} cells moved in at least 3 of 5 intervals: ${JSON.stringify(moves)}`);
    }));
    // The room is MCU: joining it in SFU mode, or under a name already in it, is refused with
    // a clear error and leaves the room as it was.
    for (const [label, query, want] of [
      ['wrong-mode', 'name=p9&mode=sfu', /Room mcu-room is in MCU mode/],
      ['same-name', 'name=p1&mode=mcu', /p1 is already in room mcu-room/],
    ]) {
      const page = await openPage(env, label, `/group-call.html?room=mcu-room&${query}`);
      await page.click('#join');
      await waitFor(async () => (await page.textContent('#error')) !== '', 20000, `${label}: an error`);
      assert.match(await page.textContent('#error'), want, `${label}: error text`);
      assert.equal(await page.textContent('#status'), 'failed', `${label}: status`);
      await page.close();
    }
    const s = await sampleCells(pages[0].page, '#mixed', 2, 2);
    assert.deepEqual(s.cells.map((c) => classifyColour(c.rgb)).sort(), colours, 'the grid after the refused joins');
    await leaveAll(pages);
    log(`MCU scenario took ${Date.now() - t0} ms`);
  }));

test('group call, SFU: 4 participants each receive the 3 others, each in its own video', { timeout: 200000 }, () =>
  withDiagnostics(env, async () => {
    const t0 = Date.now();
    const pages = await joinAll('sfu-room', 'sfu');
    const colourOf = Object.fromEntries(pages.map((p) => [p.name, p.colour]));
    await Promise.all(pages.map(({ name, page }) => assertRemotesPlaying(page, name, NAMES.filter((n) => n !== name), colourOf)));
    // p3 leaves: the others drop its video and keep the rest.
    await pages[3].page.click('#leave');
    for (const { name, page } of pages.slice(0, 3)) {
      await waitFor(async () => (await page.$$('video.remote')).length === 2, 5000, `${name}: p3's video to go`);
      assert.equal(await page.$('#remote-p3'), null, `${name}: #remote-p3 still there`);
    }
    await assertRemotesPlaying(pages[0].page, 'p0 after p3 left', ['p1', 'p2'], colourOf);
    await leaveAll(pages.slice(0, 3));
    await pages[3].page.close();
    log(`SFU scenario took ${Date.now() - t0} ms`);
  }));
