'use strict';
// one2one: alice and bob register, alice calls bob (auto-answer), both see each other.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, withDiagnostics, waitFor, listPipelines } = require('../lib/env');
const { assertVideoPlaying, pageTimings, logTimings } = require('../lib/video');
const { openPage, remoteStreamsCheck } = require('../lib/pages');

let env;
before(async () => {
  env = await setup('one2one');
});
after(async () => {
  if (env) await env.teardown();
});

async function register(page, name) {
  await page.fill('#name', name);
  await page.click('#register');
  await waitFor(
    async () => (await page.textContent('#registeredName')) === name || (await page.textContent('#error')) !== '',
    5000,
    `${name} to be registered`,
  );
  assert.equal(await page.textContent('#error'), '', `${name}: registration error`);
}

test('one2one: alice calls bob, both see each other', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    const alice = await openPage(env, 'alice', '/one2one.html');
    const bob = await openPage(env, 'bob', '/one2one.html?autoanswer=1');
    await register(alice, 'alice');
    await register(bob, 'bob');

    await alice.fill('#peer', 'bob');
    await alice.click('#call');
    await assertVideoPlaying(alice, '#videoOutput', { label: 'one2one alice remote #videoOutput (bob)' });
    await assertVideoPlaying(bob, '#videoOutput', { label: 'one2one bob remote #videoOutput (alice)' });
    await remoteStreamsCheck(alice, 'one2one alice');
    await remoteStreamsCheck(bob, 'one2one bob');
    const ta = await pageTimings(alice, 'videoOutput');
    const tb = await pageTimings(bob, 'videoOutput');
    logTimings('one2one caller alice (from click on Call)', ta);
    logTimings('one2one callee bob (from incoming call)', tb);
    assert.ok(ta.firstFrame !== null && tb.firstFrame !== null, 'first remote frame times were not recorded');

    // Terminate on one side ends the call on both and releases the pipeline.
    await alice.click('#terminate');
    await waitFor(async () => (await bob.textContent('#status')).includes('ended by the peer'), 5000, 'bob to see the call end');
    await waitFor(async () => (await listPipelines(env.fluo.url)).length === 0, 5000, 'the pipeline to be released')
      .catch(async (e) => {
        throw new Error(`${e.message}: still ${JSON.stringify(await listPipelines(env.fluo.url))}`);
      });
  }));
