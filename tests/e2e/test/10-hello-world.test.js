'use strict';
// hello-world: one page, one WebRtcEndpoint connected to itself (loopback).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, withDiagnostics, waitFor, listPipelines, log } = require('../lib/env');
const { assertVideoPlaying, pageTimings, logTimings } = require('../lib/video');
const { openPage, remoteStreamsCheck } = require('../lib/pages');

let env;
before(async () => {
  env = await setup('hello-world');
});
after(async () => {
  if (env) await env.teardown();
});

test('hello-world loopback: the camera comes back from Fluo', { timeout: 60000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'hello-world', '/hello-world.html');
    await page.click('#start');
    // The local preview works whatever the server does.
    await assertVideoPlaying(page, '#videoInput', { label: 'hello-world local #videoInput' });
    const remote = await assertVideoPlaying(page, '#videoOutput', { label: 'hello-world remote #videoOutput' });
    assert.ok(remote.width > 0);
    await remoteStreamsCheck(page, 'hello-world');
    const timings = await pageTimings(page, 'videoOutput');
    logTimings('hello-world', timings);
    assert.ok(timings.firstFrame !== null, 'first remote frame time was not recorded');

    // Stop releases the pipeline in Fluo.
    await page.click('#stop');
    const left = await waitFor(async () => {
      const ids = await listPipelines(env.fluo.url);
      return ids.length === 0 ? [] : null;
    }, 5000, 'the pipeline to be released after Stop').catch(async (e) => {
      throw new Error(`${e.message}: still ${JSON.stringify(await listPipelines(env.fluo.url))}`);
    });
    log(`hello-world: pipelines after stop: ${JSON.stringify(left)}`);
  }));
