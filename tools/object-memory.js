#!/usr/bin/env node
// Memory per object, for the limits in README.md (Security): starts a Fluo binary for each
// case, creates N objects of one kind over one WebSocket and prints the growth of the
// server's RSS divided by N.
//
//   node tools/object-memory.js [FLUO_BIN] [N]      (default target/debug/fluo, 2000)
//
// ONLY=<text> runs only the cases whose label contains it.
// Needs the `ws` module of tests/compat (scripts/deps.sh test installs it) and ffmpeg (for
// the clip the playing-player case plays).
'use strict';
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const WebSocket = require(path.join(ROOT, 'tests/compat/node_modules/ws'));
const BIN = path.resolve(process.argv[2] || path.join(ROOT, 'target/debug/fluo'));
const N = Number(process.argv[3] || 2000);
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-objmem-'));
// The temporary folder (the clip, the recordings) goes however the run ends: passed, failed,
// or an exception nobody caught (a server binary that does not start).
process.on('exit', () => fs.rmSync(TMP, { recursive: true, force: true }));

const rss = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
const threads = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/Threads:\s+(\d+)/)[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function server() {
  const portFile = path.join(TMP, 'port');
  fs.rmSync(portFile, { force: true });
  const child = spawn(BIN, ['--bind', '127.0.0.1', '--port', '0', '--port-file', portFile,
    '--network-interfaces', 'lo', '--max-objects-per-session', '100000',
    '--max-objects-per-connection', '100000', '--max-objects-per-address', '100000',
    '--max-objects', '100000', '--max-elements-per-pipeline', '100000',
    '--max-pipelines', '100000', '--max-sessions', '100000', '--max-sessions-per-address', '100000'],
    { stdio: 'ignore' });
  for (let i = 0; i < 100 && !fs.existsSync(portFile); i++) await sleep(100);
  const port = fs.readFileSync(portFile, 'utf8').trim();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/kurento`);
  await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
  let id = 0;
  const waiting = new Map();
  ws.on('message', (m) => {
    const v = JSON.parse(m);
    const w = waiting.get(v.id);
    if (w) { waiting.delete(v.id); w(v); }
  });
  const call = (method, params) => new Promise((res, rej) => {
    const i = ++id;
    waiting.set(i, (v) => (v.error ? rej(new Error(`${method}: ${JSON.stringify(v.error)}`)) : res(v.result)));
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: i, method, params }));
  });
  const stop = () => { ws.close(); child.kill('SIGKILL'); };
  return { pid: child.pid, call, stop };
}

// Each case: a label, how many, and what to do for one unit (given a pipeline).
const clip = path.join(TMP, 'clip.webm');
const CASES = [
  ['MediaPipeline', N, (c) => c.call('create', { type: 'MediaPipeline' })],
  ['PassThrough', N, (c, p) => c.call('create', { type: 'PassThrough', constructorParams: { mediaPipeline: p } })],
  ['RtpEndpoint', N, (c, p) => c.call('create', { type: 'RtpEndpoint', constructorParams: { mediaPipeline: p } })],
  ['PlayerEndpoint', N, (c, p) => c.call('create', { type: 'PlayerEndpoint', constructorParams: { mediaPipeline: p, uri: `file://${clip}` } })],
  ['RecorderEndpoint', N, (c, p) => c.call('create', { type: 'RecorderEndpoint', constructorParams: { mediaPipeline: p, uri: `file://${TMP}/rec.webm` } })],
  ['GStreamerFilter', N, (c, p) => c.call('create', { type: 'GStreamerFilter', constructorParams: { mediaPipeline: p, command: 'videoflip method=horizontal-flip' } })],
  ['WebRtcEndpoint', N, (c, p) => c.call('create', { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: p } })],
  ['WebRtcEndpoint + generateOffer', N / 4, async (c, p) => {
    const e = await c.call('create', { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: p } });
    await c.call('invoke', { object: e.value, operation: 'generateOffer', operationParams: {} });
  }],
  ['session (describe with a new id)', N * 5, (c, _p, i) => c.call('describe', { object: 'manager_ServerManager', sessionId: `objmem-${i}` })],
  ['event subscription (1000 per session)', N * 25, (c, _p, i) => c.call('subscribe', { object: 'manager_ServerManager', type: 'ObjectCreated', sessionId: `objmem-${Math.floor(i / 1000)}` })],
  ['PlayerEndpoint playing 720p VP8', 20, async (c, p) => {
    const e = await c.call('create', { type: 'PlayerEndpoint', constructorParams: { mediaPipeline: p, uri: `file://${clip}` } });
    await c.call('invoke', { object: e.value, operation: 'play', operationParams: {} });
  }],
];

(async () => {
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=1280x720:rate=30',
    '-t', '30', '-c:v', 'libvpx', '-b:v', '1M', clip]);
  console.log(`${BIN}, RSS growth per object (KiB):`);
  for (const [label, n, one] of CASES.filter(([l]) => l.includes(process.env.ONLY || ''))) {
    const c = await server();
    try {
      const p = (await c.call('create', { type: 'MediaPipeline' })).value;
      // The replay cache keeps each answer 20 s: let the warm-up's go, measure after ours went.
      await sleep(21000);
      const [base, t0] = [rss(c.pid), threads(c.pid)];
      for (let i = 0; i < n; i++) await one(c, p, i);
      await sleep(label.includes('playing') ? 5000 : 21000);
      await c.call('ping', {});
      const per = (rss(c.pid) - base) / n;
      console.log(`  ${label.padEnd(34)} n=${String(n).padStart(6)}  ${per.toFixed(1).padStart(8)} KiB` +
        `  threads +${threads(c.pid) - t0}`);
    } finally {
      c.stop();
    }
  }
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
