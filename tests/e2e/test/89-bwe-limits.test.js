'use strict';
// Simulcast under a real bandwidth limit (issue 20; Fluo with its default `--bwe auto`, which
// estimates a simulcast source's viewers as `--bwe on` does every viewer's): a Chromium
// page publishes its fake camera (960x540) in rids q, h, f as 87-simulcast does; viewer W is
// a Chromium in a network namespace of its own whose downlink is shaped to 300 kbit/s (tbf on
// the host end of its veth pair: lib/netns.js), viewer S a page of the publisher's browser on
// the host, unlimited. W's send-side estimate (its TWCC feedback: Chromium sends no REMB
// then) shows congestion and caps it to q, S keeps f; each one's decoded width is read from
// its own getStats. Then W is held on q 15 s more (before h45 that was past the expiry's
// first try of f; since h45 there may be no expiry while W is limited) and must still be
// below f; then W's limit is removed and W goes back to f within the 10 s: goog_cc's
// probes (padding Fluo sends while W is sent much less than its estimate, every 5 s) show
// the room and end W's congestion (docs/simulcast.md, "Probing").
// W's trace (width decoded, kbit/s received, estimate, layer every 500 ms) is logged, and on
// a failure of either test it is in the failure's message with W's layer changes; a failure
// of the first test is repeated in the second's (CI prints only the tail of the log).
//
// Root only (network namespaces): under CI=true a machine without it fails, elsewhere the
// tests are skipped.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const os = require('node:os');
const { withDiagnostics, waitFor, log, sleep } = require('../lib/env');
const { netnsUnavailable, setupWithNetns } = require('../lib/netns');
const { kurento, call, offer, negotiate, pageStats, publisherSettings, waitExplained, trace, outboundLayer, videoStats } = require('../lib/peer');

const CAMERA = { width: 960, height: 540 };
// W's downlink, kbit/s: above q (about 100-150 kbit/s at 240x135), below h.
const LIMIT_KBIT = 300;
// W's return to f once its limit is lifted: the 10 s (a probe within 5 s, the
// switch at f's next key frame). Without probing the congestion's expiry would take up to
// 30 s here (10 s after its last sign, 30 s after a failed expiry).
const CLIMB_MS = 10000;
// How long W stays on q before its limit is lifted: past the expiry's first try of f (10 s
// after its last sign), so that the expiry alone would come back 30 s after that failed try.
// Since h45's 200 ms probe clusters a probe often shows the limit (its fall a sign), and
// there is no expiry at all while W is limited.
const HELD_MS = 15000;

const unavailable = netnsUnavailable();
let env;
let client;
// What the first test leaves for the second: W's page, endpoint, namespace, layer changes,
// the layers' widths and the trace of W.
let state = null;
// The first test's failure, for the second's message.
let firstFailure = null;

before(async () => {
  if (unavailable) return;
  env = await setupWithNetns('bwe-limits', ['w'], { fluoArgs: () => ['--ice-tcp', '0'] });
  client = await kurento(env.fluo.url, { failAfter: 3 });
});
after(async () => {
  if (state) await state.wTrace.stop();
  if (client) client.close();
  if (env) await env.teardown();
});

// W's trace as one line (ms from its negotiation: width decoded / kbit/s received / Fluo's
// estimate kbit/s / layer) and its layer changes (ms from its negotiation), for a message.
function traceLine(st) {
  if (!st) return 'no trace of W (it was not negotiated)';
  const line = st.wTrace.samples.map((x) => `${x.at}:${x.w}/${x.kbit}/${x.est}/${x.layer}`);
  const changes = st.changes.map((c) => [c.rid, c.reason, c.at - st.wStart]);
  return `W's layer changes ${JSON.stringify(changes)}; W's trace (ms: width/kbit/s/estimate kbit/s/layer): ${line.join(' ')}`;
}

// `body`, a failure's message completed with W's trace.
async function withTrace(body) {
  try {
    await body();
  } catch (e) {
    if (e && typeof e.message === 'string' && !e.message.includes("W's trace")) e.message = `${e.message}; ${traceLine(state)}`;
    throw e;
  }
}

// W's figures as one line: what its own getStats decodes, what Fluo says of it, its link.
async function describe(page, endpoint, ns) {
  const s = await pageStats(page).catch((e) => ({ error: e.message }));
  const out = await videoStats(endpoint, 'outboundrtp').catch((e) => ({ error: e.message }));
  return `decodes ${s.frameWidth} wide (${s.framesDecoded} frames, ${s.bytesReceived} bytes), Fluo: layer ${JSON.stringify(out && out.fluoLayer)}, estimate ${out && out.fluoBandwidthEstimate}; ${ns.qdisc()}; load ${os.loadavg()[0].toFixed(1)}`;
}

function skipOrFail(t) {
  if (!unavailable) return false;
  if (process.env.CI === 'true') assert.fail(`cannot run under CI: ${unavailable}`);
  t.skip(unavailable);
  return true;
}

test('bandwidth estimate: a viewer behind 300 kbit/s gets q (BANDWIDTH), an unlimited one f', { timeout: 120000 }, async (t) => {
  if (skipOrFail(t)) return;
  await withDiagnostics(env, () => withTrace(async () => {
    const { ns, browser: wBrowser } = env.netns.w;
    const pipeline = await call(client, 'create', 'MediaPipeline');
    const publisher = await call(pipeline, 'create', 'WebRtcEndpoint');
    const weak = await call(pipeline, 'create', 'WebRtcEndpoint');
    const strong = await call(pipeline, 'create', 'WebRtcEndpoint');
    if (!weak.constructor.events.includes('FluoLayerChanged')) weak.constructor.events.push('FluoLayerChanged');
    const changes = [];
    weak.on('FluoLayerChanged', (e) => changes.push({ ...e, at: Date.now() }));

    const pubPage = await env.browser.newPage('bwe-publisher');
    const pubOffer = await offer(pubPage, { publish: true, camera: CAMERA, url: `${env.web.base}/hello-world.html` });
    assert.match(await negotiate(pubPage, publisher, pubOffer), /a=simulcast:recv q;h;f/);
    assert.equal((await publisherSettings(pubPage)).width, CAMERA.width);
    await call(publisher, 'connect', weak);
    await call(publisher, 'connect', strong);

    // The publisher sends its three layers, f at the camera's width, before W connects: W
    // then starts on the top layer that flows, as a viewer joining a running call does.
    const sStart = Date.now();
    const sPage = await env.browser.newPage('bwe-strong');
    await negotiate(sPage, strong, await offer(sPage, { url: `${env.web.base}/hello-world.html` }));
    const sending = await waitExplained(pubPage, async () => {
      const s = await pageStats(pubPage);
      return ['q', 'h', 'f'].every((r) => s.sent[r] && s.sent[r].width > 0) && s.sent.f.width === CAMERA.width ? s : null;
    }, 40000, `the publisher sending all three layers, f ${CAMERA.width} wide`);
    const q = sending.sent.q.width;
    const f = sending.sent.f.width;
    log(`publisher sends all three layers ${Date.now() - sStart} ms after S joined: ${JSON.stringify(sending.sent)}, estimate ${sending.bwe} bit/s`);

    ns.limit(LIMIT_KBIT);
    const wPage = await wBrowser.newPage('bwe-weak');
    const wAnswer = await negotiate(wPage, weak, await offer(wPage, {}));
    const wStart = Date.now();
    // The answer keeps TWCC for the receive-only viewer (the estimate's feedback).
    assert.match(wAnswer, /a=rtcp-fb:\d+ transport-cc/);
    // W every 500 ms: the width it decodes, kbit/s received, Fluo's estimate and layer.
    let lastBytes = 0;
    const wTrace = trace(async () => {
      const s = await pageStats(wPage);
      const out = await videoStats(weak, 'outboundrtp');
      const kbit = Math.round(((s.bytesReceived - lastBytes) * 8) / 500);
      lastBytes = s.bytesReceived;
      const l = out && out.fluoLayer;
      return { w: s.frameWidth, kbit, est: out && out.fluoBandwidthEstimate ? Math.round(out.fluoBandwidthEstimate / 1000) : null, layer: l ? `${l.rid} ${l.reason}` : null };
    });
    state = { ns, wPage, weak, changes, q, f, wTrace, wStart, pipeline };

    const decodes = (page, width) => async () => {
      const s = await pageStats(page);
      return s.frameWidth === width && s.framesDecoded > 10 ? s : null;
    };
    state.decodes = decodes;
    // W on q by its estimate. Its first frames may be of any layer: what counts is that it
    // ends on q, told BANDWIDTH, and stays there while S decodes f.
    await waitExplained(pubPage, async () => {
      const s = await decodes(wPage, q)();
      if (!s) return null;
      const layer = await outboundLayer(weak);
      return layer && layer.rid === 'q' && layer.reason === 'BANDWIDTH' ? s : null;
    }, 40000, `W (behind ${LIMIT_KBIT} kbit/s) decoding ${q} wide (q) with fluoLayer q BANDWIDTH`).catch(async (e) => {
      throw new Error(`${e.message}; W ${await describe(wPage, weak, ns)}; W's layer changes ${JSON.stringify(changes.map((c) => [c.rid, c.reason, c.at - wStart]))}`);
    });
    log(`W on q (BANDWIDTH) ${Date.now() - wStart} ms after it was negotiated: ${await describe(wPage, weak, ns)}; changes ${JSON.stringify(changes.map((c) => [c.rid, c.reason, c.at - wStart]))}`);
    await waitExplained(pubPage, decodes(sPage, f), 20000, `S (unlimited) decoding ${f} wide (f)`);
    assert.equal((await outboundLayer(strong)).rid, 'f');
    const wOut = await videoStats(weak, 'outboundrtp');
    const sOut = await videoStats(strong, 'outboundrtp');
    log(`estimates: W ${wOut.fluoBandwidthEstimate} bit/s, S ${sOut.fluoBandwidthEstimate} bit/s; REMB from W ${wOut.remb}, from S ${sOut.remb}`);
    // With TWCC kept Chromium sends no REMB (Fluo's egress reads every REMB naming its SSRCs).
    assert.equal(wOut.remb, 0, "no REMB from W, which sends TWCC feedback");
    assert.equal(sOut.remb, 0, "no REMB from S, which sends TWCC feedback");
    assert.ok(wOut.fluoBandwidthEstimate > 0 && wOut.fluoBandwidthEstimate < LIMIT_KBIT * 1000 * 1.5,
      `W's estimate near its ${LIMIT_KBIT} kbit/s: ${wOut.fluoBandwidthEstimate}`);
    // A second on: W still decodes q.
    await sleep(1000);
    assert.equal((await pageStats(wPage)).frameWidth, q, `W stays on q: ${await describe(wPage, weak, ns)}`);
    state.ready = true;
  })).catch((e) => {
    firstFailure = e && e.message ? e.message : String(e);
    throw e;
  });
});

// The issue asks 10 s. Before probing the cap went only when W's congestion expired, 10 s
// after its last sign or 30 s after a failed expiry: 8.4-9.97 s in 10 runs lifted right
// after W reached q, 31.0 s once; here W is held past the first expiry's try first.
test('bandwidth estimate: its limit lifted, the viewer is back on f within 10 s (a probe)', { timeout: 120000 }, async (t) => {
  if (skipOrFail(t)) return;
  assert.ok(state && state.ready, `the first test did not leave W on q: ${firstFailure || 'no failure recorded'}`.slice(0, 20000));
  const { ns, wPage, weak, changes, f, wTrace, wStart, decodes } = state;
  await withDiagnostics(env, () => withTrace(async () => {
    await sleep(HELD_MS);
    log(`W held ${HELD_MS} ms more: ${await describe(wPage, weak, ns)}; changes ${JSON.stringify(changes.map((c) => [c.rid, c.reason, c.at - wStart]))}`);
    // Still below f while limited: a probe fooled by the queue's burst allowance would have
    // lifted it already, and the climb below would measure nothing (R43-probe 4).
    const heldLayer = await outboundLayer(weak);
    const heldWidth = (await pageStats(wPage)).frameWidth;
    assert.ok(heldLayer && heldLayer.rid !== 'f' && heldWidth < f,
      `W below f before its limit is lifted: ${await describe(wPage, weak, ns)}`);
    // Waited for longer than the 10 s so that a late return is measured too.
    ns.unlimit();
    const lifted = Date.now();
    try {
      await waitFor(decodes(wPage, f), 45000, `W decoding ${f} wide (f) after its limit was lifted`).catch(async (e) => {
        throw new Error(`${e.message}; W ${await describe(wPage, weak, ns)}; changes ${JSON.stringify(changes.map((c) => [c.rid, c.reason, c.at - lifted]))}`);
      });
      const climbMs = Date.now() - lifted;
      const layer = await outboundLayer(weak);
      log(`W back on f ${climbMs} ms after the limit was lifted (${lifted - wStart} ms after W joined): fluoLayer ${JSON.stringify(layer)}; changes since ${JSON.stringify(changes.filter((c) => c.at >= lifted).map((c) => [c.rid, c.reason, c.at - lifted]))}`);
      assert.equal(layer.rid, 'f');
      assert.ok(climbMs <= CLIMB_MS, `W back on f within ${CLIMB_MS} ms of the lift: ${climbMs} ms`);
    } finally {
      await wTrace.stop();
      const line = wTrace.samples.map((x) => `${x.at}:${x.w}/${x.kbit}/${x.est}/${x.layer}`);
      log(`W's trace from its negotiation (ms: width decoded / kbit/s received / Fluo's estimate kbit/s / layer), limit lifted at ${lifted - wStart}: ${line.join(' ')}`);
    }
    await call(state.pipeline, 'release');
  }));
});
