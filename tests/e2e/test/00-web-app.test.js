'use strict';
// The demo web app on its own (no media flows): static pages, signalling, and errors
// shown to the user. The media server URI points at a closed port on purpose.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const WebSocket = require('ws');
const { tmpDir, removeTmpDir, startWeb, launchBrowser, withDiagnostics, waitFor } = require('../lib/env');
const { openPage } = require('../lib/pages');

let env;

async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

before(async () => {
  const dir = tmpDir('fluo-e2e-web-');
  const deadUri = `ws://127.0.0.1:${await closedPort()}/kurento`;
  let web;
  let browser;
  try {
    web = await startWeb(dir, deadUri);
    browser = await launchBrowser(dir);
  } catch (err) {
    if (web) await web.stop();
    removeTmpDir(dir);
    throw err;
  }
  env = {
    dir,
    deadUri,
    web,
    browser,
    fluo: { logFile: '(none)', logTail: () => '(no media server in this file)' },
  };
});
after(async () => {
  if (!env) return;
  await env.browser.close();
  await env.web.stop();
  removeTmpDir(env.dir);
});

const errorShown = (page, ms) =>
  waitFor(async () => (await page.textContent('#error')) || null, ms, 'an error in #error');

test('static pages are served; paths outside public/ are not', async () => {
  const index = await fetch(`${env.web.base}/`);
  assert.equal(index.status, 200);
  const html = await index.text();
  for (const page of ['hello-world.html', 'magic-mirror.html', 'chroma-key.html', 'qr-reader.html', 'one2many.html', 'one2one.html', 'recorder.html', 'player.html', 'group-call.html', 'speaker-switch.html']) {
    assert.ok(html.includes(`href="${page}"`), `index links ${page}`);
    const r = await fetch(`${env.web.base}/${page}`);
    assert.equal(r.status, 200, page);
    assert.match(r.headers.get('content-type'), /text\/html/);
  }
  assert.equal((await fetch(`${env.web.base}/common.js`)).status, 200);
  assert.equal((await fetch(`${env.web.base}/nope.html`)).status, 404);
  const escape = await fetch(`${env.web.base}/%2e%2e/server.js`);
  assert.ok(escape.status === 403 || escape.status === 404, `../server.js gave ${escape.status}`);
  // /media/ serves clips only (by name, from the media dir).
  for (const p of ['/media/%2e%2e%2fserver.js', '/media/..%2fpackage.json', '/media/nope.webm', '/media/server.js']) {
    assert.equal((await fetch(`${env.web.base}${p}`)).status, 404, p);
  }
});

test('hello-world: an unreachable media server is reported in #error', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'hello-world', '/hello-world.html');
    const t0 = Date.now();
    await page.click('#start');
    const error = await errorShown(page, 15000);
    assert.match(error, /Could not find media server at address ws:\/\/127\.0\.0\.1:\d+\/kurento/);
    assert.equal(await page.textContent('#status'), 'failed');
    assert.equal(await page.isEnabled('#start'), true, 'Start is enabled again');
    console.log(`[e2e] web app: unreachable media server reported after ${Date.now() - t0} ms: "${error}"`);
  }));

test('one2many: a viewer without presenter gets an error', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    const page = await openPage(env, 'viewer', '/one2many.html');
    await page.click('#viewer');
    assert.match(await errorShown(page, 10000), /No active presenter/);
  }));

test('one2one: duplicate names and calls to unknown users are rejected', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    const a = await openPage(env, 'alice', '/one2one.html');
    const b = await openPage(env, 'alice-again', '/one2one.html');
    await a.fill('#name', 'alice');
    await a.click('#register');
    await waitFor(async () => (await a.textContent('#registeredName')) === 'alice', 5000, 'alice registered');
    assert.equal(await a.isEnabled('#call'), true, 'Call enabled after registering');
    await b.fill('#name', 'alice');
    await b.click('#register');
    assert.match(await errorShown(b, 5000), /already registered/);

    await a.fill('#peer', 'carol');
    await a.click('#call');
    assert.match(await errorShown(a, 10000), /Call rejected: User carol is not registered/);
    assert.equal(await a.isEnabled('#terminate'), false, 'no call in progress');
  }));

test('player: a URI that is not a sample clip is refused by the app itself, before the media server', { timeout: 30000 }, () =>
  withDiagnostics(env, async () => {
    for (const uri of ['file:///etc/passwd', 'http://127.0.0.1:9/elsewhere.webm']) {
      const page = await openPage(env, 'player-not-a-sample', `/player.html?uri=${encodeURIComponent(uri)}`);
      await page.click('#play');
      const error = await errorShown(page, 10000);
      assert.match(error, /This demo plays only its sample clips \(sample\.webm, sample\.mp4\): start the web app with --player-any-uri/, `${uri}: ${error}`);
      assert.equal(await page.isEnabled('#play'), true, 'Play is enabled again');
      await page.close();
    }
  }));

// The group-call and speaker-switch signalling, straight on the socket: bad input gets a
// clear error, and a join that failed (no media server) leaves nothing behind (the same name
// from another socket, the first still open, gets the same error, not "already in the room").
async function openSignalling() {
  const ws = new WebSocket(`${env.web.base.replace(/^http/, 'ws')}/ws`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const errors = [];
  ws.on('message', (data) => {
    const m = JSON.parse(data);
    if (m.id === 'error') errors.push(m.message);
  });
  ws.ask = async (message, want) => {
    const n = errors.length;
    ws.send(JSON.stringify(message));
    await waitFor(() => errors.length > n, 15000, `an error for ${JSON.stringify(message)}`);
    assert.match(errors[n], want, JSON.stringify(message));
  };
  return ws;
}

test('group-call and speaker-switch: bad signalling is refused with clear errors', { timeout: 30000 }, async () => {
  const sockets = [await openSignalling(), await openSignalling()];
  const [ws] = sockets;
  try {
    await ws.ask({ id: 'groupJoin', room: 'r', name: 'no spaces', mode: 'sfu', sdpOffer: 'v=0' }, /^Bad participant name "no spaces": 1 to 32 letters/);
    await ws.ask({ id: 'groupJoin', room: '../r', name: 'n', mode: 'sfu', sdpOffer: 'v=0' }, /^Bad room name "\.\.\/r"/);
    await ws.ask({ id: 'groupJoin', room: 'r', name: 'n', mode: 'p2p', sdpOffer: 'v=0' }, /^Bad mode "p2p": sfu or mcu$/);
    await ws.ask({ id: 'groupJoin', room: 'r', name: 'n', mode: 'sfu' }, /^groupJoin without an SDP offer$/);
    await ws.ask({ id: 'groupReceive', sender: 'x', sdpOffer: 'v=0' }, /^Join a room first$/);
    await ws.ask({ id: 'speakerSetSource', name: 'a' }, /^Join a room first$/);
    await ws.ask({ id: 'speakerRemoveSource' }, /^Join a room first$/);
    for (const socket of sockets) {
      await socket.ask({ id: 'groupJoin', room: 'r', name: 'n', mode: 'mcu', sdpOffer: 'v=0' }, /^Could not find media server at address/);
      await socket.ask({ id: 'speakerJoin', room: 'r', name: 'n', sdpOffer: 'v=0' }, /^Could not find media server at address/);
    }
  } finally {
    for (const socket of sockets) socket.close();
  }
});
