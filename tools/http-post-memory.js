#!/usr/bin/env node
// Memory while an HttpPostEndpoint takes an upload: makes two 640x360 VP8 + Opus WebM clips
// with ffmpeg (20 s and 40 s at 4 Mbit/s: about 10 and 21 MB), and for each, with one media
// worker and with --workers 0, starts the Fluo binary, POSTs the clip with curl (chunked) to
// an HttpPostEndpoint recorded by a RecorderEndpoint, and prints the server's and its
// workers' RSS before the upload and their peak during it (sampled every 200 ms). A body
// held whole would make the peak grow with the clip.
//
//   node tools/http-post-memory.js [FLUO_BIN]      (default target/debug/fluo)
//
// Needs tests/compat's node_modules (scripts/deps.sh test), ffmpeg, curl and ss.
'use strict';
const { execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
process.env.FLUO_BIN = path.resolve(process.argv[2] || path.join(ROOT, 'target/debug/fluo'));
const h = require(path.join(ROOT, 'tests/compat/test/helpers'));
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-postmem-'));
process.on('exit', () => fs.rmSync(TMP, { recursive: true, force: true }));

const rss = (pid) => {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
  } catch (_) {
    return 0;
  }
};

function clip(seconds) {
  const file = path.join(TMP, `clip-${seconds}s.webm`);
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30,noise=alls=30:allf=t',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', String(seconds),
    '-c:v', 'libvpx', '-b:v', '4M', '-deadline', 'realtime', '-cpu-used', '8', '-g', '30',
    '-c:a', 'libopus', '-b:a', '48k', '-f', 'webm', file]);
  return file;
}

async function run(file, extra) {
  const server = await h.startServer(['--http-port', '0', ...extra]);
  const client = (await h.connectClient(server.url)).client;
  try {
    const pipeline = await client.create('MediaPipeline');
    const ep = await pipeline.create('HttpPostEndpoint');
    const out = path.join(TMP, 'out.webm');
    const rec = await pipeline.create('RecorderEndpoint', { uri: `file://${out}` });
    await ep.connect(rec);
    await rec.record();
    const url = await ep.getUrl();
    const ss = execFileSync('ss', ['-Hltnp', `sport = :${server.port}`]).toString();
    const pid = Number(ss.match(/pid=(\d+)/)[1]);
    const kids = () => execFileSync('sh', ['-c', `pgrep -P ${pid} || true`]).toString()
      .split('\n').filter(Boolean).map(Number);
    const sample = () => ({ server: rss(pid), workers: kids().reduce((a, k) => a + rss(k), 0) });
    await h.sleep(1500);
    const base = sample();
    const peak = { ...base };
    const timer = setInterval(() => {
      const s = sample();
      peak.server = Math.max(peak.server, s.server);
      peak.workers = Math.max(peak.workers, s.workers);
    }, 200);
    const t0 = Date.now();
    const res = await new Promise((resolve) => execFile('curl', ['-sS', '-o', '/dev/null',
      '-w', '%{http_code}', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${file}`, url],
    (e, stdout) => resolve(stdout)));
    clearInterval(timer);
    await rec.stopAndWait();
    const mb = (fs.statSync(file).size / 1e6).toFixed(1);
    const kib = (x) => `${x} KiB`;
    console.log([`${path.basename(file)} (${mb} MB)`, extra.join(' ') || '(default workers)',
      `HTTP ${res} after ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      `server ${kib(base.server)} -> peak ${kib(peak.server)} (+${peak.server - base.server})`,
      `workers ${kib(base.workers)} -> peak ${kib(peak.workers)} (+${peak.workers - base.workers})`,
    ].join(' | '));
    await pipeline.release();
  } finally {
    await h.closeClient(client);
    await server.stop();
  }
}

(async () => {
  console.log(`load: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const files = [clip(20), clip(40)];
  for (const extra of [['--workers', '1'], ['--workers', '0']]) {
    for (const f of files) await run(f, extra);
  }
  console.log(`load: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
