'use strict';
// Process and browser set-up for the end-to-end suite.
//   startFluo(dir, {token, args, bin}) -> {port, url, logFile, logTail(), stop()} (args: extra
//                          flags; bin: another server binary than FLUO_BIN)
//   startWeb(dir, fluoUrl, extraArgs, extraEnv) -> {port, base, logFile, logTail(), stop()}
//   launchBrowser(dir, extraArgs, {executablePath, profile})
//                          -> {context, newPage(name), consoleTail(name), close()}
//   listPipelines(fluoUrl) -> ids of the pipelines alive in Fluo (raw JSON-RPC)
//   withDiagnostics(env, fn) runs fn and, if it throws, prints the logs of all parties
//
// Environment: FLUO_BIN (default ../../target/debug/fluo), CHROMIUM_BIN (/usr/bin/chromium),
// E2E_MEDIA_WS_URI (use that media server instead of starting Fluo), E2E_KEEP=1 (keep
// the temp dirs with the logs; otherwise they are removed, pass or fail: withDiagnostics has
// printed the logs' tails of a failure), RUST_LOG (Fluo's, default info).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { chromium } = require('playwright-core');

const E2E_DIR = path.resolve(__dirname, '..');
const ROOT = path.resolve(E2E_DIR, '../..');
const FLUO_BIN = process.env.FLUO_BIN
  ? path.resolve(E2E_DIR, process.env.FLUO_BIN)
  : path.resolve(ROOT, 'target/debug/fluo');
const WEB_SERVER = path.join(ROOT, 'web/server.js');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--ignore-certificate-errors',
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function log(...args) {
  console.log('[e2e]', ...args);
}

async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

function tail(file, lines = 80) {
  try {
    const all = fs.readFileSync(file, 'utf8').split('\n');
    return all.slice(-lines).join('\n');
  } catch (e) {
    return `(cannot read ${file}: ${e.message})`;
  }
}

// Spawn `cmd args`, stdout+stderr to `logFile`, wait for the port in `portFile`.
async function spawnWithPortFile(label, cmd, args, env, portFile, logFile) {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { env, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  child.on('error', (err) => {
    exited = { error: err.message };
  });
  let port;
  try {
    port = await waitFor(
      () => {
        if (exited) throw new Error(`${label} exited before listening: ${JSON.stringify(exited)}\n${tail(logFile)}`);
        let text = '';
        try {
          text = fs.readFileSync(portFile, 'utf8').trim();
        } catch (_) {
          return null;
        }
        return /^\d+$/.test(text) && Number(text) > 0 ? Number(text) : null;
      },
      20000,
      `${label} port file ${portFile}`,
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  async function stop() {
    if (!exited) {
      child.kill('SIGTERM');
      const done = await Promise.race([exitPromise, sleep(5000).then(() => null)]);
      if (!done) {
        child.kill('SIGKILL');
        await exitPromise;
      }
    }
  }
  return { port, stop, logFile, logTail: (n) => tail(logFile, n), get exited() { return exited; } };
}

function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Removes a dir made by tmpDir, pass or fail (E2E_KEEP=1 keeps it and says where).
function removeTmpDir(dir) {
  if (!dir) return;
  if (process.env.E2E_KEEP) log(`kept ${dir} (E2E_KEEP)`);
  else fs.rmSync(dir, { recursive: true, force: true });
}

// `token`: started with --auth-token (p.url stays without it, as a client is given it;
// p.authUrl carries it for the suite's own JSON-RPC calls). `args`: more flags. `bin`: the
// server binary, FLUO_BIN unless given.
async function startFluo(dir, { token = null, args = [], bin = FLUO_BIN } = {}) {
  if (process.env.E2E_MEDIA_WS_URI) {
    // An already running media server (a real KMS for comparison, or a Fluo started by hand).
    const url = process.env.E2E_MEDIA_WS_URI;
    log(`external media server ${url} (E2E_MEDIA_WS_URI; no Fluo started)`);
    return { url, authUrl: url, logFile: '(external)', logTail: () => '(external media server: no log)', stop: async () => {} };
  }
  if (!fs.existsSync(bin)) {
    throw new Error(`Fluo binary not found: ${bin} (cargo build -p fluo-server)`);
  }
  const portFile = path.join(dir, 'fluo.port');
  const logFile = path.join(dir, 'fluo.log');
  const env = {
    ...process.env,
    RUST_LOG: process.env.RUST_LOG || 'info',
    KMS_NETWORK_INTERFACES: 'lo',
  };
  const p = await spawnWithPortFile(
    'fluo',
    bin,
    // Tests bind port 0, the HTTP listener's too (KMS's 9091 is its default).
    ['--bind', '127.0.0.1', '--port', '0', '--port-file', portFile, ...(args.includes('--http-port') ? [] : ['--http-port', '0']), ...(token ? ['--auth-token', token] : []), ...args],
    env,
    portFile,
    logFile,
  );
  p.url = `ws://127.0.0.1:${p.port}/kurento`;
  p.authUrl = token ? `${p.url}?access_token=${encodeURIComponent(token)}` : p.url;
  log(`fluo ${bin} on ${p.url} (log ${logFile})`);
  return p;
}

async function startWeb(dir, fluoUrl, extraArgs = [], extraEnv = {}) {
  const portFile = path.join(dir, 'web.port');
  const logFile = path.join(dir, 'web.log');
  const p = await spawnWithPortFile(
    'web app',
    process.execPath,
    [WEB_SERVER, '--http', '--bind', '127.0.0.1', '--port', '0', '--port-file', portFile, '--ws-uri', fluoUrl, ...extraArgs],
    { ...process.env, ...extraEnv },
    portFile,
    logFile,
  );
  p.base = `http://127.0.0.1:${p.port}`;
  log(`web app on ${p.base} -> ${fluoUrl} (log ${logFile})`);
  return p;
}

// `executablePath`: what playwright starts instead of Chromium (lib/netns.js's wrapper);
// `profile`: the profile folder's name in `dir` (one per browser).
async function launchBrowser(dir, extraArgs = [], { executablePath = CHROMIUM, profile = 'chromium-profile' } = {}) {
  const userDataDir = path.join(dir, profile);
  fs.mkdirSync(userDataDir);
  // headless:false: the --headless=new flag above is what makes it headless, so
  // playwright adds no headless flag of its own.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: false,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    permissions: ['camera', 'microphone'],
    viewport: { width: 1000, height: 800 },
  });
  const consoles = new Map();
  async function newPage(name) {
    const page = await context.newPage();
    const lines = [];
    consoles.set(name, lines);
    const stamp = () => new Date().toISOString().slice(11, 23);
    page.on('console', (msg) => lines.push(`${stamp()} ${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => lines.push(`${stamp()} pageerror: ${err.message}`));
    page.name = name;
    return page;
  }
  function consoleTail(name, n = 40) {
    return (consoles.get(name) || []).slice(-n).join('\n');
  }
  async function close() {
    await context.close().catch(() => {});
  }
  return { context, newPage, consoleTail, consoleNames: () => [...consoles.keys()], close };
}

// One JSON-RPC call on a fresh socket (no session: Fluo makes one up).
function fluoRpc(url, method, params) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to ${method} within 5 s`));
    }, 5000);
    ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', method, params, id: 1 })));
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.id !== 1) return;
      clearTimeout(timer);
      ws.close();
      if (m.error) reject(new Error(`${method}: ${m.error.code} ${m.error.message}`));
      else resolve(m.result);
    });
    ws.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function listPipelines(fluoUrl) {
  const r = await fluoRpc(fluoUrl, 'invoke', { object: 'manager_ServerManager', operation: 'getPipelines' });
  return r.value;
}

// Full environment of one test file: Fluo + web app + browser, in a temp dir.
// `webArgs(dir)`, `fluoArgs(dir)` and `browserArgs(dir)` give extra web app, Fluo and
// Chromium arguments; `bin` another server binary than FLUO_BIN.
async function setup(label, { webArgs = () => [], fluoArgs = () => [], browserArgs = () => [], token = null, bin = FLUO_BIN } = {}) {
  const dir = tmpDir(`fluo-e2e-${label}-`);
  const started = [];
  try {
    const fluo = await startFluo(dir, { token, args: fluoArgs(dir), bin });
    started.push(fluo);
    const web = await startWeb(dir, fluo.url, webArgs(dir));
    started.push(web);
    const browser = await launchBrowser(dir, browserArgs(dir));
    const env = { dir, fluo, web, browser };
    env.teardown = async () => {
      await browser.close();
      await web.stop();
      await fluo.stop();
      removeTmpDir(dir);
    };
    return env;
  } catch (err) {
    // What did start is stopped, and the dir goes with it.
    for (const p of started.reverse()) await p.stop();
    removeTmpDir(dir);
    throw err;
  }
}

async function withDiagnostics(env, fn) {
  try {
    return await fn();
  } catch (err) {
    env.failed = true;
    const parts = [`---- fluo log (tail, ${env.fluo.logFile}) ----`, env.fluo.logTail(120)];
    parts.push(`---- web app log (tail, ${env.web.logFile}) ----`, env.web.logTail(60));
    for (const name of env.browser.consoleNames()) {
      parts.push(`---- browser console: ${name} ----`, env.browser.consoleTail(name));
    }
    console.log(parts.join('\n'));
    throw err;
  }
}

module.exports = {
  ROOT,
  CHROMIUM_ARGS,
  FLUO_BIN,
  sleep,
  log,
  waitFor,
  tmpDir,
  removeTmpDir,
  startFluo,
  startWeb,
  launchBrowser,
  fluoRpc,
  listPipelines,
  setup,
  withDiagnostics,
};
