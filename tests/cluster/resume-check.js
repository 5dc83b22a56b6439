'use strict';
// The official kurento-client reconnecting to another entry (docs/cluster.md, "Reconnecting"):
// it connects through a TCP proxy to entry A, makes a pipeline on owner OWNER with a
// WebRtcEndpoint and listens to its IceCandidateFound; then A is killed (SIGKILL) and the proxy
// sends new connections to entry B. kurento-client reconnects on its own and sends `connect
// {sessionId}`: it must say `reconnected` with the same session, and its objects must work
// (getName, processOffer, the listener's event after gatherCandidates).
//   node tests/cluster/resume-check.js A B A_PID OWNER
// A and B: each entry's WebSocket port on 127.0.0.1, or HOST:PORT (scripts/cluster-test.sh, the
// proxy then in its clients' namespace). RESUME_MAX_MS (default 5000): kurento-client must say
// `reconnected` within it of the kill. Prints `FIGURE name value` lines; exits 1 on a failed
// check.

const net = require('node:net');
const assert = require('node:assert/strict');
const h = require('../compat/test/helpers.js');

const [entryA, entryB, pidA, owner] = process.argv.slice(2);
if (!entryA || !entryB || !pidA || !owner) {
  console.error('usage: resume-check.js A_PORT|A_HOST:A_PORT B_PORT|B_HOST:B_PORT A_PID OWNER_NODE_ID');
  process.exit(2);
}
const MAX_MS = Number(process.env.RESUME_MAX_MS || 5000);

/** `PORT` (on 127.0.0.1) or `HOST:PORT`: {host, port}. */
function backend(text) {
  const i = text.lastIndexOf(':');
  return i < 0 ? { host: '127.0.0.1', port: Number(text) } : { host: text.slice(0, i), port: Number(text.slice(i + 1)) };
}

const OFFER = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n' +
  'm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n' +
  'a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n' +
  'a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n';

const say = (text) => console.log(`resume-check: ${text}`);
const figure = (name, value) => console.log(`FIGURE ${name} ${value}`);

/** A TCP proxy whose backend can change; `switchTo` also cuts the live connections. */
async function switchingProxy(to) {
  const state = { to, sockets: new Set() };
  const server = net.createServer((client) => {
    const upstream = net.connect(state.to.port, state.to.host);
    for (const s of [client, upstream]) {
      state.sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
        state.sockets.delete(s);
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}/kurento`,
    switchTo(to) {
      state.to = to;
      for (const s of state.sockets) s.destroy();
    },
    close: () => server.close(),
  };
}

async function main() {
  const proxy = await switchingProxy(backend(entryA));
  const { client } = await h.connectClient(proxy.url, { failAfter: 20 });
  const pipeline = await h.callback(client, 'create', 'MediaPipeline', { fluoNode: owner });
  const ep = await h.callback(pipeline, 'create', 'WebRtcEndpoint');
  const candidates = [];
  ep.on('IceCandidateFound', (e) => candidates.push(e));
  // Requests go in order: once answered, the subscription was made.
  await h.callback(ep, 'getName');
  const before = client.sessionId;
  say(`session ${before}, endpoint ${ep.id}`);
  // Let entry A write the session to the store (after its next heartbeat).
  await h.sleep(1500);
  const reconnected = new Promise((resolve) => client.once('reconnected', resolve));
  const t0 = Date.now();
  process.kill(Number(pidA), 'SIGKILL');
  proxy.switchTo(backend(entryB));
  const same = await h.withTimeout(reconnected, 20000, 'kurento-client reconnected');
  const took = Date.now() - t0;
  figure('reconnected_ms', took);
  assert.ok(took <= MAX_MS, `kurento-client reconnected ${took} ms after the kill (bound ${MAX_MS} ms)`);
  assert.equal(same, true, 'kurento-client says the session is the same');
  assert.equal(client.sessionId, before, 'the same sessionId');
  const name = await h.callback(ep, 'getName');
  assert.ok(typeof name === 'string' && name.length > 0, `getName: ${name}`);
  const answer = await h.callback(ep, 'processOffer', OFFER);
  assert.ok(answer.startsWith('v=0'), `processOffer: ${answer}`);
  await h.callback(ep, 'gatherCandidates');
  await h.waitFor(() => candidates.length > 0, 10000, 'IceCandidateFound through entry B');
  figure('candidates', candidates.length);
  say(`kurento-client reconnected ${took} ms after entry A's SIGKILL, through entry B: the same session (${before}), its endpoint answered getName and processOffer, ${candidates.length} IceCandidateFound events through its listener`);
  await h.closeClient(client);
  proxy.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`resume-check: FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
