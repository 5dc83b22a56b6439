'use strict';
// one2many: one presenter page, two viewer pages; the presenter's endpoint feeds both
// viewers' endpoints.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, withDiagnostics, waitFor, listPipelines, log } = require('../lib/env');
const { assertVideoPlaying, pageTimings, logTimings } = require('../lib/video');
const { openPage, remoteStreamsCheck } = require('../lib/pages');

let env;
before(async () => {
  env = await setup('one2many');
});
after(async () => {
  if (env) await env.teardown();
});

test('one2many: one presenter, two viewers see the presenter', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const presenter = await openPage(env, 'presenter', '/one2many.html');
    await presenter.click('#presenter');
    await assertVideoPlaying(presenter, '#video', { label: 'presenter local #video' });
    // The presenter's media must reach Fluo before viewers join.
    await waitFor(
      () => presenter.evaluate(() => window.fluoTimings.connected !== undefined || document.getElementById('error').textContent !== ''),
      20000,
      'the presenter peer connection to connect',
    );
    assert.equal(await presenter.textContent('#error'), '', 'presenter page error');
    const presenterTimings = await pageTimings(presenter, 'video');
    log(`timing one2many presenter: click -> peer connected ${presenterTimings.connected} ms (answer ${presenterTimings.answer}, ICE connected ${presenterTimings.iceConnected})`);

    const viewers = [];
    for (const name of ['viewer1', 'viewer2']) {
      const page = await openPage(env, name, '/one2many.html');
      await page.click('#viewer');
      viewers.push({ name, page });
    }
    for (const { name, page } of viewers) {
      await assertVideoPlaying(page, '#video', { label: `one2many ${name} remote #video` });
      await remoteStreamsCheck(page, `one2many ${name}`);
      const t = await pageTimings(page, 'video');
      logTimings(`one2many ${name}`, t);
      assert.ok(t.firstFrame !== null, `${name}: first remote frame time was not recorded`);
    }
    // The viewer's peer connection is receive-only.
    const directions = await viewers[0].page.evaluate(() =>
      window.fluoPeers[window.fluoPeers.length - 1].getTransceivers().map((t) => t.currentDirection));
    assert.deepEqual(directions, ['recvonly', 'recvonly'], 'viewer transceivers');

    // A viewer leaving does not disturb the other one.
    await viewers[0].page.click('#stop');
    await assertVideoPlaying(viewers[1].page, '#video', { label: 'one2many viewer2 after viewer1 left' });

    // The presenter leaving ends the viewers' sessions and releases the pipeline.
    await presenter.click('#stop');
    await waitFor(
      async () => (await viewers[1].page.textContent('#status')).includes('presenter left'),
      5000,
      'viewer2 to be told the presenter left',
    );
    await waitFor(async () => (await listPipelines(env.fluo.url)).length === 0, 5000, 'the pipeline to be released')
      .catch(async (e) => {
        throw new Error(`${e.message}: still ${JSON.stringify(await listPipelines(env.fluo.url))}`);
      });
  }));
