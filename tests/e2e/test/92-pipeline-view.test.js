'use strict';
// The live pipeline view (docs/operations.md, "Pipeline view"), served by Fluo on its
// operations listener at /admin/view/, in Chromium. The scene, made with the official
// kurento-client: a Chromium camera looped back through one WebRtcEndpoint (pipeline 1), and
// a PlayerEndpoint playing an H.264 file as it is (useEncodedMedia) into a WebRtcEndpoint
// whose Chromium peer takes VP8 only (pipeline 2: the router transcodes H264 -> VP8). The
// page's DOM: one box per element, one edge per connection, the transcoded edge labelled
// with its codec pair, FLOWING states, a bitrate above 0, the panel of a clicked element with
// its properties and stats, the viewer's box gone after its release. The same page served by
// the demo web app (web/public/pipelines.html, --ops-uri) shows the same graph. A screenshot
// goes to target/e2e-artifacts/ (E2E_ARTIFACTS sets another folder); its path is printed.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { setup, startWeb, tmpDir, removeTmpDir, withDiagnostics, waitFor, log, ROOT } = require('../lib/env');
const { makeClip, fileUri } = require('../lib/media');

const kurentoClient = require(path.join(ROOT, 'web/node_modules/kurento-client'));

const TOKEN = 'view-s3cret';
const ARTIFACTS = process.env.E2E_ARTIFACTS || path.join(ROOT, 'target', 'e2e-artifacts');

let env;
let client;
let media;
let clip;
let opsBase;
let web;
before(async () => {
  media = tmpDir('fluo-e2e-view-media-');
  clip = await makeClip(path.join(media, 'view.mp4'), { seconds: 40, size: '320x180', codecs: 'h264' });
  env = await setup('pipeline-view', {
    token: TOKEN,
    fluoArgs: (dir) => ['--metrics-port', '0', '--metrics-port-file', path.join(dir, 'ops.port')],
  });
  const port = await waitFor(() => {
    const f = path.join(env.dir, 'ops.port');
    const t = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : '';
    return /^\d+$/.test(t) && Number(t) > 0 ? t : null;
  }, 10000, 'the operations port file');
  opsBase = `http://127.0.0.1:${port}`;
  // A second web app, told where the operations listener is (known only now).
  const dir = path.join(env.dir, 'web-ops');
  fs.mkdirSync(dir);
  web = await startWeb(dir, env.fluo.url, ['--ops-uri', opsBase]);
  client = await new Promise((resolve, reject) => {
    const c = kurentoClient(env.fluo.url, { access_token: TOKEN, failAfter: 5 }, (err) => (err ? reject(err) : resolve(c)));
  });
});
after(async () => {
  if (client) client.close();
  if (web) await web.stop();
  if (env) await env.teardown();
  if (media) removeTmpDir(media);
});

// In a page: a peer connection that sends the fake camera (`send`) or receives only, with
// its video codecs limited to `video` (mime types) when given.
const PEER = `
window.makePeer = async (send, video) => {
  const pc = new RTCPeerConnection();
  if (send) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    for (const t of stream.getTracks()) pc.addTransceiver(t, { direction: 'sendrecv', streams: [stream] });
  } else {
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const v = pc.addTransceiver('video', { direction: 'recvonly' });
    if (video) {
      const codecs = RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => video.includes(c.mimeType));
      v.setCodecPreferences(codecs);
    }
  }
  window.pc = pc;
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  return offer.sdp;
};
window.framesDecoded = async () => {
  let n = 0;
  (await window.pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0;
  });
  return n;
};
`;

async function peer(name, send, video) {
  const page = await env.browser.newPage(name);
  await page.goto(`${env.web.base}/`);
  await page.evaluate(PEER);
  const offer = await page.evaluate(([s, v]) => window.makePeer(s, v), [send, video]);
  return { page, offer };
}

async function negotiate(endpoint, p) {
  const answer = await endpoint.processOffer(p.offer);
  await p.page.evaluate((sdp) => window.pc.setRemoteDescription({ type: 'answer', sdp }), answer);
  await waitFor(async () => (await p.page.evaluate(() => window.framesDecoded())) > 10, 30000, `${p.page.name} decoding`);
}

// What the view page shows, read from its DOM.
function readView(page) {
  return page.evaluate(() => {
    const boxes = [...document.querySelectorAll('svg.graph g.element')].map((g) => ({
      id: g.dataset.id,
      type: g.dataset.type,
      flowIn: g.dataset.flowIn,
      flowOut: g.dataset.flowOut,
      rateIn: Number(g.querySelector('text.bitrate').dataset.in || 0),
      rateOut: Number(g.querySelector('text.bitrate').dataset.out || 0),
      transcoder: g.querySelector('text.transcoder').textContent,
    }));
    const edges = [...document.querySelectorAll('svg.graph path.edge')].map((p) => ({
      source: p.dataset.source,
      sink: p.dataset.sink,
      media: p.dataset.media,
      mode: p.dataset.mode,
    }));
    const pairs = [...document.querySelectorAll('svg.graph text.codec-pair')].map((t) => t.textContent);
    return { boxes, edges, pairs, status: document.getElementById('status').textContent };
  });
}

test('pipeline view: a loopback and a transcoded player in Chromium, live', { timeout: 120000 }, () =>
  withDiagnostics(env, async () => {
    // The data needs the token; the page's files do not (a browser cannot send one).
    assert.equal((await fetch(`${opsBase}/admin/pipelines`)).status, 401);
    const loopPipeline = await client.create('MediaPipeline');
    const loop = await loopPipeline.create('WebRtcEndpoint');
    await loop.setName('camera-loop');
    await loop.connect(loop);
    const playPipeline = await client.create('MediaPipeline');
    const player = await playPipeline.create('PlayerEndpoint', { uri: fileUri(clip), useEncodedMedia: true });
    const viewer = await playPipeline.create('WebRtcEndpoint');
    await player.connect(viewer);

    const cam = await peer('view-camera', true, null);
    await negotiate(loop, cam);
    const vp8 = await peer('view-vp8-viewer', false, ['video/VP8']);
    assert.doesNotMatch(vp8.offer, /H264/, 'the viewer offers VP8 only');
    await player.play();
    await negotiate(viewer, vp8);

    const page = await env.browser.newPage('view');
    await page.setViewportSize({ width: 1280, height: 760 });
    await page.goto(`${opsBase}/admin/view/#token=${encodeURIComponent(TOKEN)}`);
    assert.ok(!page.url().includes(TOKEN), 'the token leaves the address bar');
    const ids = { [loop.id]: 'WebRtcEndpoint', [player.id]: 'PlayerEndpoint', [viewer.id]: 'WebRtcEndpoint' };
    let v = await waitFor(async () => {
      const r = await readView(page);
      return r.boxes.length === 3 && r.edges.length === 6 ? r : null;
    }, 10000, 'three boxes and six edges');
    for (const b of v.boxes) assert.equal(ids[b.id], b.type, JSON.stringify(b));
    // The style sheet applies under the page's Content-Security-Policy (no inline style).
    const header = await page.evaluate(() => getComputedStyle(document.querySelector('header')).backgroundColor);
    assert.equal(header, 'rgb(38, 50, 56)');
    // connect() without a media type: AUDIO, VIDEO and DATA edges each.
    for (const [s, k] of [[loop.id, loop.id], [player.id, viewer.id]]) {
      const media = v.edges.filter((e) => e.source === s && e.sink === k).map((e) => e.media).sort();
      assert.deepEqual(media, ['AUDIO', 'DATA', 'VIDEO']);
    }
    v = await waitFor(async () => {
      const r = await readView(page);
      const t = r.edges.find((e) => e.source === player.id && e.media === 'VIDEO');
      return t && t.mode === 'transcode' && r.pairs.includes('H264 → VP8') ? r : null;
    }, 15000, 'the player -> viewer video edge marked as transcoded H264 -> VP8');
    const playerBox = v.boxes.find((b) => b.id === player.id);
    assert.match(playerBox.transcoder, /H264→VP8/, JSON.stringify(playerBox));
    const loopVideo = v.edges.find((e) => e.source === loop.id && e.media === 'VIDEO');
    assert.equal(loopVideo.mode, 'forward', JSON.stringify(loopVideo));
    v = await waitFor(async () => {
      const r = await readView(page);
      const b = r.boxes.find((x) => x.id === loop.id);
      return b.flowIn.includes('VIDEO') && b.flowOut.includes('VIDEO') && b.rateIn > 0 && b.rateOut > 0 ? r : null;
    }, 15000, 'the loopback FLOWING in and out with a bitrate above 0');
    const l = v.boxes.find((x) => x.id === loop.id);
    log(`pipeline view: loopback in ${l.rateIn} b/s, out ${l.rateOut} b/s; player ${JSON.stringify(v.boxes.find((b) => b.id === player.id))}; ${v.status}`);
    assert.ok(v.boxes.find((b) => b.id === player.id).flowOut.includes('VIDEO'), 'the player FLOWING out');

    // The same page from the demo web app, which forwards /admin/pipelines to Fluo.
    const demo = await env.browser.newPage('view-web-app');
    await demo.goto(`${web.base}/pipelines.html#token=${encodeURIComponent(TOKEN)}`);
    const d = await waitFor(async () => {
      const r = await readView(demo);
      return r.boxes.length === 3 && r.pairs.includes('H264 → VP8') ? r : null;
    }, 10000, 'the web app\'s pipelines.html with the same graph');
    assert.equal(d.edges.length, 6);
    await demo.close();

    // The panel of a clicked element: its properties and its getStats.
    await page.click(`svg.graph g.element[data-id="${loop.id}"]`);
    const panel = await waitFor(async () => page.evaluate(() => {
      if (document.getElementById('panel').hidden) return null;
      const props = Object.fromEntries([...document.querySelectorAll('#panel-props tr')].map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]));
      const stats = [...document.querySelectorAll('#panel-stats .stat-title')].map((t) => t.textContent);
      return stats.length ? { title: document.getElementById('panel-title').textContent, props, stats } : null;
    }), 10000, 'the panel with properties and stats');
    assert.match(panel.title, /^WebRtcEndpoint /);
    assert.equal(panel.props.name, 'camera-loop');
    assert.ok(panel.stats.some((s) => s.startsWith('inboundrtp')), JSON.stringify(panel.stats));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'pipeline-view.png');
    await page.screenshot({ path: shot, fullPage: true });
    log(`pipeline view: screenshot ${shot}`);

    // The viewer goes: its box and its edges too.
    await viewer.release();
    v = await waitFor(async () => {
      const r = await readView(page);
      return r.boxes.length === 2 ? r : null;
    }, 10000, 'the released viewer gone from the page');
    assert.ok(!v.boxes.some((b) => b.id === viewer.id));
    assert.equal(v.edges.length, 3);

    // A token the server refuses (changed on the server, say) while the panel is open: the
    // form asks for another, and neither the view nor the panel asks again meanwhile.
    await page.evaluate(() => {
      window.asked = [];
      const real = window.fetch;
      window.fetch = (url, init) => {
        window.asked.push(String(url));
        return real(url, init);
      };
      sessionStorage.setItem('fluo-view-token', 'not-the-token');
    });
    await waitFor(() => page.evaluate(() => !document.getElementById('login').hidden), 10000, 'the token form');
    const refused = await page.evaluate(() => window.asked.length);
    await new Promise((r) => setTimeout(r, 4500));
    const after = await page.evaluate(() => window.asked);
    assert.equal(after.length, refused, `asked again after the refusal: ${after.slice(refused).join(', ')}`);
    await cam.page.close();
    await vp8.page.close();
    await page.close();
    await loopPipeline.release();
    await playPipeline.release();
  }));

// One GET to the web app with a raw request target (`path` as it is on the request line).
function rawGet(port, target, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, headers }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c) => { body += c; });
      r.on('end', () => resolve({ status: r.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the web app forwards /admin/pipelines to its --ops-uri only', { timeout: 30000 }, async () => {
  // `GET //HOST:PORT/admin/pipelines`, read as a URL, names another host: a listener of the
  // test's stands for it and must see nothing (the caller's Authorization least of all).
  const seen = [];
  const decoy = http.createServer((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization || ''}`);
    res.end('{"pipelines":[]}');
  });
  await new Promise((resolve) => decoy.listen(0, '127.0.0.1', resolve));
  const elsewhere = `127.0.0.1:${decoy.address().port}`;
  try {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const list = await rawGet(web.port, `//${elsewhere}/admin/pipelines`, auth);
    const one = await rawGet(web.port, `//${elsewhere}/admin/pipelines/nope`, auth);
    assert.deepEqual(seen, [], 'nothing reached the other host');
    // Fluo's listener answered both.
    assert.equal(list.status, 200, list.body);
    assert.ok(Array.isArray(JSON.parse(list.body).pipelines), list.body);
    assert.equal(one.status, 404, one.body);
    assert.match(one.body, /no element 'nope'/);
  } finally {
    decoy.close();
  }
});
