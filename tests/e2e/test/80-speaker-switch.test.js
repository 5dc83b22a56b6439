'use strict';
// speaker-switch page (web/apps/speaker-switch.js): three participants in a room with a
// DispatcherOneToMany, each with a camera of its own colour (lib/camera.js). The source is
// set, then switched three times (a -> b -> c -> a) from the pages' buttons: after each
// switch every page's remote video shows the new source's colour, and over the whole run no
// page's picture stands still for 1 s or more (a freeze monitor samples it every 40 ms); the
// source's own page plays it muted.
// removeSource: the pages are told there is no source and the pictures stop. Everyone
// leaving releases the room's pipeline.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, withDiagnostics, waitFor, listPipelines, log, sleep } = require('../lib/env');
const { assertVideoPlaying, startFreezeMonitor, freezeReport } = require('../lib/video');
const { openPage } = require('../lib/pages');
const { useColourCamera, classifyColour } = require('../lib/camera');

const NAMES = ['a', 'b', 'c'];
const MAX_FREEZE_MS = 1000;

let env;
before(async () => {
  env = await setup('speaker-switch');
});
after(async () => {
  if (env) await env.teardown();
});

test('speaker switch: DispatcherOneToMany switched 3 times, every page follows, no freeze of 1 s', { timeout: 150000 }, () =>
  withDiagnostics(env, async () => {
    const t0 = Date.now();
    const pages = [];
    for (let i = 0; i < NAMES.length; i++) {
      const name = NAMES[i];
      let colour;
      const page = await openPage(env, `speaker-${name}`, `/speaker-switch.html?room=talk&name=${name}`, {
        beforeLoad: async (p) => {
          colour = await useColourCamera(p, i);
        },
      });
      await page.click('#join');
      pages.push({ name, colour, page });
    }
    const colourOf = Object.fromEntries(pages.map((p) => [p.name, p.colour]));
    // Everyone in, on every page: a source button per participant.
    for (const { name, page } of pages) {
      await waitFor(async () => (await page.$$('#sources button')).length === 3 || (await page.textContent('#error')) !== '',
        30000, `${name}: three participants listed`);
      assert.equal(await page.textContent('#error'), '', `${name}: page error`);
      await waitFor(() => page.evaluate(() => window.fluoTimings.connected !== undefined), 30000, `${name}: peer connected`);
    }

    // Waits until every page shows `source` (the status line and the picture's colour);
    // returns the time it took.
    async function switchTo(source, by) {
      const started = Date.now();
      await by.click(`#source-${source}`);
      await Promise.all(pages.map(async ({ name, page }) => {
        await waitFor(async () => (await page.textContent('#source')) === source, 10000, `${name}: told the source is ${source}`);
        let last = null;
        await waitFor(async () => {
          const r = await freezeReport(page, 'remote').catch(() => null);
          last = r && r.colour;
          return last && classifyColour(last) === colourOf[source];
        }, 20000, `${name}: the picture to turn ${colourOf[source]}`).catch((e) => {
          throw new Error(`${e.message}: mean colour ${JSON.stringify(last)}`);
        });
        // The source gets its own media back: its page mutes it (no echo), the others do not.
        assert.equal(await page.$eval('#remote', (v) => v.muted), name === source, `${name}: #remote muted`);
      }));
      const ms = Date.now() - started;
      log(`speaker switch to ${source} (${colourOf[source]}): every page shows it ${ms} ms after the click`);
      return ms;
    }

    for (const { page } of pages) await startFreezeMonitor(page, '#remote', 'remote');
    // The first source: from then on the pictures must not stand still.
    await switchTo('a', pages[0].page);
    await Promise.all(pages.map(({ name, page }) =>
      assertVideoPlaying(page, '#remote', { label: `speaker ${name} #remote (source a)`, timeoutMs: 30000 })));
    const since = await Promise.all(pages.map(({ page }) => page.evaluate(() => performance.now())));
    await switchTo('b', pages[2].page);
    await switchTo('c', pages[1].page);
    await switchTo('a', pages[2].page);
    await sleep(1500);
    for (let i = 0; i < pages.length; i++) {
      const { name, page } = pages[i];
      const r = await freezeReport(page, 'remote', since[i]);
      log(`speaker ${name}: ${r.changes} picture changes in ${Math.round(r.now - r.from)} ms, longest freeze ${r.longestFreezeMs} ms`);
      assert.ok(r.longestFreezeMs < MAX_FREEZE_MS, `${name}: the picture stood still ${r.longestFreezeMs} ms across the switches`);
    }

    // removeSource: no source, and the pictures stop changing.
    await pages[1].page.click('#removeSource');
    for (const { name, page } of pages) {
      await waitFor(async () => (await page.textContent('#source')) === 'none', 10000, `${name}: told there is no source`);
    }
    await sleep(1500);
    const stopped = await Promise.all(pages.map(({ page }) => page.evaluate(() => performance.now())));
    await sleep(1500);
    for (let i = 0; i < pages.length; i++) {
      const r = await freezeReport(pages[i].page, 'remote', stopped[i]);
      log(`speaker ${pages[i].name} after removeSource: ${r.changes} picture changes in ${Math.round(r.now - r.from)} ms`);
      assert.equal(r.changes, 0, `${pages[i].name}: the picture still changes with no source`);
    }

    for (const { page } of pages) await page.click('#leave');
    await waitFor(async () => (await listPipelines(env.fluo.url)).length === 0, 5000, 'the room\'s pipeline to be released')
      .catch(async (e) => {
        throw new Error(`${e.message}: still ${JSON.stringify(await listPipelines(env.fluo.url))}`);
      });
    log(`speaker-switch scenario took ${Date.now() - t0} ms`);
  }));
