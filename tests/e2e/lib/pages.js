'use strict';
// Page helpers shared by the scenarios.

const assert = require('node:assert/strict');
const { log } = require('./env');

// Open `path` of the web app in a new tab and wait until its signalling socket is open.
// `beforeLoad(page)` runs before the page loads (an init script: a camera of its own).
// `waitUntil`: what page.goto waits for ('load', the default, waits for the page's images).
async function openPage(env, name, path, { beforeLoad = null, waitUntil = 'load' } = {}) {
  const page = await env.browser.newPage(name);
  if (beforeLoad) await beforeLoad(page);
  await page.goto(`${env.web.base}${path}`, { waitUntil });
  await page.waitForFunction(
    () => {
      const s = document.getElementById('status').textContent;
      const e = document.getElementById('error').textContent;
      return s !== 'idle' || e !== '';
    },
    null,
    { timeout: 10000 },
  );
  const error = await page.textContent('#error');
  assert.equal(error, '', `${name}: page error after load: ${error}`);
  return page;
}

// KMS sends audio and video of an endpoint as ONE MediaStream (one msid); pages that
// show the first remote stream (kurento-utils) depend on that.
async function remoteStreamsCheck(page, label) {
  const tracks = await page.evaluate(() => window.fluoRemoteTracks);
  log(`${label}: remote tracks ${JSON.stringify(tracks)}`);
  const kinds = tracks.map((t) => t.kind).sort();
  assert.deepEqual(kinds, ['audio', 'video'], `${label}: expected one audio and one video remote track`);
  const ids = new Set(tracks.flatMap((t) => t.streamIds));
  assert.equal(ids.size, 1, `${label}: audio and video should arrive in one MediaStream: ${JSON.stringify(tracks)}`);
}

module.exports = { openPage, remoteStreamsCheck };
