'use strict';
// /metrics during a Chromium loopback (hello-world): the text format read strictly (HELP and
// TYPE for every family, counters' samples `_total`, `# EOF` last), the WebRTC packet and
// byte counters of both kinds moving while media flows, the endpoint counted as connected,
// the gauges back to zero after Stop, and /health/ready answering 200 throughout.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { setup, withDiagnostics, waitFor, log } = require('../lib/env');
const { assertVideoPlaying } = require('../lib/video');
const { openPage } = require('../lib/pages');

let env;
let base;
before(async () => {
  env = await setup('metrics', {
    fluoArgs: (dir) => ['--metrics-port', '0', '--metrics-port-file', path.join(dir, 'metrics.port')],
  });
  const port = await waitFor(() => {
    const f = path.join(env.dir, 'metrics.port');
    const t = fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim() : '';
    return /^\d+$/.test(t) ? t : null;
  }, 10000, 'the metrics port file');
  base = `http://127.0.0.1:${port}`;
});
after(async () => {
  if (env) await env.teardown();
});

// The text format, strictly: a family's samples follow its HELP and TYPE lines.
function parse(text) {
  const lines = text.split('\n').filter((l) => l !== '');
  assert.equal(lines.at(-1), '# EOF', 'the text ends with # EOF');
  const types = new Map();
  const helps = new Set();
  const samples = new Map();
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  for (const line of lines.slice(0, -1)) {
    const meta = /^# (HELP|TYPE|UNIT) (\S+) (.+)$/.exec(line);
    if (meta) {
      assert.match(meta[2], name, line);
      if (meta[1] === 'HELP') helps.add(meta[2]);
      if (meta[1] === 'TYPE') types.set(meta[2], meta[3]);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value), line);
    const family = [m[1], ...['_total', '_bucket', '_sum', '_count'].map((s) => m[1].endsWith(s) ? m[1].slice(0, -s.length) : null)]
      .find((f) => f && types.has(f));
    assert.ok(family, `sample of no declared family: ${line}`);
    assert.ok(helps.has(family), `${family} has no HELP`);
    if (types.get(family) === 'counter') assert.ok(m[1].endsWith('_total'), line);
    const key = m[1] + (m[2] || '');
    assert.ok(!samples.has(key), `${key} twice`);
    samples.set(key, value);
  }
  return { types, samples };
}

async function scrape() {
  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /openmetrics-text|text\/plain/);
  return parse(await r.text());
}

const get = (m, key) => m.samples.get(key) ?? 0;

test('metrics: WebRTC counters move during a loopback call', { timeout: 90000 }, () =>
  withDiagnostics(env, async () => {
    assert.equal((await fetch(`${base}/health/ready`)).status, 200);
    const before = await scrape();
    for (const kind of ['audio', 'video']) {
      assert.equal(get(before, `fluo_webrtc_received_packets_total{kind="${kind}"}`), 0);
    }
    const page = await openPage(env, 'metrics', '/hello-world.html');
    await page.click('#start');
    await assertVideoPlaying(page, '#videoOutput', { label: 'metrics remote #videoOutput' });
    const first = await scrape();
    assert.equal(get(first, 'fluo_pipelines'), 1);
    assert.equal(get(first, 'fluo_elements{type="WebRtcEndpoint"}'), 1);
    assert.equal(get(first, 'fluo_webrtc_endpoints_by_dtls_state{state="connected"}'), 1);
    const ice = ['connected', 'ready'].map((s) => get(first, `fluo_webrtc_endpoints_by_ice_state{state="${s}"}`));
    assert.equal(ice[0] + ice[1], 1, `ICE connected or ready: ${ice}`);
    assert.equal(first.types.get('fluo_webrtc_received_packets'), 'counter');
    // Within two seconds every packet and byte counter of both kinds went up (scraped every
    // 50 ms until they all did, rather than once after 2 s).
    const keys = ['audio', 'video'].flatMap((kind) => ['received_packets', 'received_bytes', 'sent_packets', 'sent_bytes']
      .map((c) => `fluo_webrtc_${c}_total{kind="${kind}"}`));
    const invokes = 'fluo_request_duration_seconds_count{method="invoke"}';
    let second;
    await waitFor(async () => {
      second = await scrape();
      return keys.every((key) => get(second, key) > get(first, key)) && get(second, invokes) >= 3;
    }, 2000, 'every counter up').catch((e) => {
      // Out of time: the assertions below say which counter stood still.
      if (!/^timed out/.test(e.message)) throw e;
    });
    const rows = [];
    for (const key of keys) {
      const [a, b] = [get(first, key), get(second, key)];
      rows.push(`${key} ${a} -> ${b}`);
      assert.ok(a > 0 && b > a, `${key}: ${a} then ${b}`);
    }
    log(`metrics: ${rows.join('; ')}`);
    assert.ok(get(second, invokes) >= 3);
    await page.click('#stop');
    const after = await waitFor(async () => {
      const m = await scrape();
      return get(m, 'fluo_pipelines') === 0 ? m : null;
    }, 5000, 'the pipeline gauge back to 0 after Stop');
    // The counters keep what the released endpoint counted.
    const key = 'fluo_webrtc_received_packets_total{kind="video"}';
    assert.ok(get(after, key) >= get(second, key), `${key} went down`);
    assert.equal(get(after, 'fluo_webrtc_endpoints_by_dtls_state{state="connected"}'), 0);
    assert.equal((await fetch(`${base}/health/ready`)).status, 200);
  }));
