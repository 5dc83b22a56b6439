'use strict';
// Shared helpers for the Fluo compatibility suite.
//   startServer(extraArgs)  -> {url, port, pid, stop()}  (own server per test file, port 0)
//   connectClient(url, opts) -> official kurento-client 7.3.0, resolved after its strict check
//   RawClient               -> raw JSON-RPC frames over `ws`
//   startProxy(targetPort)  -> severable TCP proxy {url, sever(), close()}

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');

const COMPAT_DIR = path.resolve(__dirname, '..');
const FLUO_BIN = process.env.FLUO_BIN
  ? path.resolve(COMPAT_DIR, process.env.FLUO_BIN)
  : path.resolve(COMPAT_DIR, '../../target/debug/fluo');

// Bound for a single test (debug server, 2-core machine).
const TEST_TIMEOUT = 20000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const UUID_RE = new RegExp(`^${UUID}$`);
const PIPELINE_ID_RE = new RegExp(`^${UUID}_kurento\\.MediaPipeline$`);

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `fn` until it returns a truthy value (or throw after `ms`). */
async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

// FLUO_COMPAT_URL (ws://HOST:PORT/PATH): run against a server that is already listening
// there instead of starting one per file (make cluster-test runs a subset of the suite through
// a cluster node, scripts/cluster-test.sh). A test that needs its own server's flags fails.
const EXTERNAL_URL = process.env.FLUO_COMPAT_URL || '';

/** The server at FLUO_COMPAT_URL, in startServer's shape; nothing to stop. */
function externalServer(extraArgs) {
  if (extraArgs.length > 0) {
    throw new Error(`FLUO_COMPAT_URL is set: this test needs a server of its own (${extraArgs.join(' ')})`);
  }
  const port = Number(new URL(EXTERNAL_URL).port) || 80;
  return { port, pid: null, url: EXTERNAL_URL, stop: async () => {}, exited: null };
}

/**
 * Start the server binary on 127.0.0.1 with an OS-chosen port. Resolves once the
 * server has written the bound port to its --port-file.
 */
async function startServer(extraArgs = []) {
  if (EXTERNAL_URL) return externalServer(extraArgs);
  if (!fs.existsSync(FLUO_BIN)) {
    throw new Error(`server binary not found: ${FLUO_BIN} (cargo build -p fluo-server)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fluo-compat-'));
  const portFile = path.join(dir, 'port');
  // Tests bind port 0, the HTTP listener's too (KMS's 9091 is its default).
  const http = extraArgs.includes('--http-port') ? [] : ['--http-port', '0'];
  const args = ['--bind', '127.0.0.1', '--port', '0', '--port-file', portFile, ...http, ...extraArgs];
  const child = spawn(FLUO_BIN, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  child.on('error', (err) => {
    exited = { error: err };
  });

  let port;
  try {
    port = await waitFor(
      () => {
        if (exited) throw new Error(`server exited before listening: ${JSON.stringify(exited)}`);
        let text = '';
        try {
          text = fs.readFileSync(portFile, 'utf8').trim();
        } catch (_) {
          return null;
        }
        return /^\d+$/.test(text) && Number(text) > 0 ? Number(text) : null;
      },
      15000,
      `port file ${portFile}`,
    );
  } catch (err) {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  async function stop() {
    if (!exited) {
      child.kill('SIGTERM');
      let timer;
      const done = await Promise.race([
        exitPromise,
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(null), 5000);
        }),
      ]);
      clearTimeout(timer);
      if (!done) {
        child.kill('SIGKILL');
        await exitPromise;
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }

  return {
    port,
    pid: child.pid,
    url: `ws://127.0.0.1:${port}/kurento`,
    stop,
    get exited() {
      return exited;
    },
  };
}

/**
 * Connect the official client; resolves after describe(ServerManager) + getInfo
 * (strict mode) with `{client}`.
 *
 * The client is wrapped in an object on purpose: a KurentoClient is itself a thenable
 * whose `then` resolves to a *copy* (disguise.unthenable) that lacks `sessionId` and
 * does not share the EventEmitter state, so awaiting it directly would hand the tests
 * the copy instead of the real client.
 *
 * `duplicates_timeout` is shortened from 20 s: kurento-jsonrpc keeps one 20 s timer per
 * received response (to drop duplicated responses), which would keep every test
 * process alive for 20 s after its last request.
 */
async function connectClient(url, options = {}) {
  const kurentoClient = require('kurento-client');
  let client;
  await withTimeout(
    new Promise((resolve, reject) => {
      client = kurentoClient(url, { failAfter: 5, duplicates_timeout: 1000, ...options }, (err) => (err ? reject(err) : resolve()));
    }),
    TEST_TIMEOUT,
    `kurento-client connect to ${url}`,
  );
  return { client };
}

// Request ids are unique across every RawClient of a test process: the server's replay
// cache (PROTOCOL.md §7) would otherwise answer a second client of the same session
// that reuses an id with the first client's cached response.
let nextRequestId = 1000;

/** Raw JSON-RPC client on top of `ws`. */
class RawClient {
  constructor(url) {
    this.url = url;
    this.pending = new Map();
    this.notifications = [];
    this.messages = [];
    this.unmatched = [];
    this.waiters = [];
  }

  static async open(url) {
    const c = new RawClient(url);
    await c._open();
    return c;
  }

  _open() {
    return withTimeout(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url);
        this.ws = ws;
        ws.on('open', resolve);
        ws.on('error', reject);
        ws.on('message', (data) => this._onMessage(data.toString()));
        this.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
      }),
      10000,
      `raw ws open ${this.url}`,
    );
  }

  _onMessage(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      msg = { __unparseable: text };
    }
    this.messages.push(msg);
    if (msg && msg.method === 'onEvent' && msg.id === undefined) {
      this.notifications.push(msg);
    } else if (msg && msg.id !== undefined && msg.id !== null && this.pending.has(JSON.stringify(msg.id))) {
      const key = JSON.stringify(msg.id);
      const waiters = this.pending.get(key);
      const w = waiters.shift();
      if (waiters.length === 0) this.pending.delete(key);
      w(msg);
    } else {
      this.unmatched.push(msg);
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** Send a raw text frame. */
  sendText(text) {
    this.ws.send(text);
  }

  /** Send a request object as-is (must contain `id`) and await the response with that id. */
  request(obj, ms = 15000) {
    const key = JSON.stringify(obj.id);
    const p = new Promise((resolve) => {
      if (!this.pending.has(key)) this.pending.set(key, []);
      this.pending.get(key).push(resolve);
    });
    this.ws.send(JSON.stringify(obj));
    return withTimeout(p, ms, `response to ${JSON.stringify(obj).slice(0, 200)}`);
  }

  /** Build and send a JSON-RPC request; resolves with the whole response. */
  call(method, params, id) {
    const req = { jsonrpc: '2.0', method, id: id === undefined ? nextRequestId++ : id };
    if (params !== undefined) req.params = params;
    return this.request(req);
  }

  /** Wait for a frame that matches `pred` among frames NOT matched to a pending request. */
  async nextUnmatched(pred, ms = 10000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.unmatched.findIndex(pred);
      if (i >= 0) return this.unmatched.splice(i, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for an unsolicited frame');
      await withTimeout(new Promise((r) => this.waiters.push(r)), left, 'frame').catch(() => {});
    }
  }

  close() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close();
    return this.closed;
  }
}

/**
 * A TCP proxy in front of the server that the test can sever (destroy every live
 * connection) to force the client to reconnect. New connections are accepted again
 * right away unless `refuse` is true.
 */
async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const sockets = new Set();
  const state = { refuse: false, accepted: 0 };
  const server = net.createServer((client) => {
    if (state.refuse) {
      client.destroy();
      return;
    }
    state.accepted++;
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/kurento`,
    state,
    /** Destroy every live connection (both directions). */
    sever() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    get connections() {
      return sockets.size / 2;
    },
    close() {
      this.sever();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Assert that a promise rejects with a Kurento/JSON-RPC error code. Returns the error. */
async function rejectsWithCode(promise, code, assert) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a rejection with code ${code}, got success`);
  assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
  return err;
}

/**
 * Call a remote method of a kurento-client object in callback style and return a
 * promise. Needed to observe server errors: in kurento-client 7.3.0 the promise
 * returned by a generated method called WITHOUT a callback resolves to undefined on
 * error (the default callback `noop` only console.trace()s the error and returns the
 * result), so `await obj.getTag('missing')` never rejects.
 */
function callback(obj, method, ...args) {
  return new Promise((resolve, reject) => {
    obj[method](...args, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

/** Close a kurento-client without leaving timers behind. */
async function closeClient(client) {
  if (!client) return;
  try {
    client.close();
  } catch (_) {
    /* ignore */
  }
  await sleep(50);
}

module.exports = {
  FLUO_BIN,
  TEST_TIMEOUT,
  UUID_RE,
  PIPELINE_ID_RE,
  UUID,
  sleep,
  waitFor,
  withTimeout,
  startServer,
  connectClient,
  RawClient,
  startProxy,
  rejectsWithCode,
  closeClient,
  callback,
};
