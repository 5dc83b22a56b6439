'use strict';
// The client side of make cluster-test (scripts/cluster-test.sh starts the nodes, Redis and
// the network namespaces, then runs this in the namespace where Redis listens).
//   node cluster-check.js placement   pipelines through the entry land on the expected nodes
//   node cluster-check.js signalling  getName from 10 clients at once through the entry and
//                                     directly on the owner (the forwarding's cost)
//   node cluster-check.js kill PID    SIGSTOP then SIGKILL of a node (PID) while clients hold
//                                     pipelines there through the entry, subscribed to their
//                                     Error, with requests in flight: the answers (40004), the
//                                     Error events (NODE_DOWN), the connections kept, the codes;
//                                     and an application that plays a clip to a WebRTC peer on
//                                     the victim re-creates its call once told of the death
//   node cluster-check.js redis-down  while Redis is down: creates through the entry answered
//                                     as docs/cluster.md says (unpinned: made on the entry;
//                                     pinned: on its node, from the last listing)
//   node cluster-check.js redis-back  once Redis is started again: every node listed again,
//                                     the outage's pipelines claimed again, unpinned creates
//                                     through the entry placed on the other nodes again
// Environment: CLUSTER_ENTRY (ws:// URL of the entry node), CLUSTER_REDIS_HOST,
// CLUSTER_REDIS_PORT, CLUSTER_EXPECT (comma-separated node ids unpinned pipelines must land
// on), CLUSTER_VICTIM (node id of PID), CLUSTER_OTHER (a node id that stays up),
// CLUSTER_PIPELINES (how many unpinned, default 6), CLUSTER_SIG_CLIENTS / CLUSTER_SIG_REQUESTS /
// CLUSTER_LINK_RTT_MS (forwardingCost below), CLUSTER_BENCH (fluo-bench, whose `recv` is the
// application's receiving peer), CLUSTER_CLIP (a VP8/Opus WebM it plays), CLUSTER_PEER_IP (the
// address that peer binds: this namespace's), CLUSTER_ENTRY_NODE (the entry's node id),
// CLUSTER_STATE (a file redis-down leaves its pipelines' ids in for redis-back),
// CLUSTER_KILLED_MS / CLUSTER_SINCE_MS (wall clock, ms, of Redis's kill / its restart).
// Prints `FIGURE name value` lines for the script's report; exits 1 on a failed check.

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const assert = require('node:assert/strict');
const h = require('../compat/test/helpers.js');
const media = require('../compat/test/media.js');

const ENTRY = need('CLUSTER_ENTRY');
const REDIS = ['-h', need('CLUSTER_REDIS_HOST'), '-p', process.env.CLUSTER_REDIS_PORT || '6379'];

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const say = (text) => console.log(`cluster-check: ${text}`);
const figure = (name, value) => console.log(`FIGURE ${name} ${value}`);

function redis(...args) {
  return execFileSync('redis-cli', [...REDIS, '--raw', ...args], { encoding: 'utf8' }).trim();
}

/** The node id in a pipeline's ownership record (waits up to 3 s for the claim). */
async function ownerOf(pipeline) {
  const text = await h.waitFor(() => redis('GET', `fluo:pipeline:${pipeline}`), 3000, `the claim of ${pipeline}`);
  return JSON.parse(text).node;
}

/** A raw JSON-RPC call that must succeed; its result's value. */
async function ok(raw, method, params) {
  const answer = await raw.call(method, params);
  assert.ok(answer.result, `${method} ${JSON.stringify(params).slice(0, 120)}: ${JSON.stringify(answer.error)}`);
  return answer.result.value;
}

/** A pipeline (pinned to `node` if given) with a WebRtcEndpoint and a PassThrough connected. */
async function rawPipeline(raw, node) {
  const props = node ? { fluoNode: node } : {};
  const pipeline = await ok(raw, 'create', { type: 'MediaPipeline', constructorParams: props });
  const ep = await ok(raw, 'create', { type: 'WebRtcEndpoint', constructorParams: { mediaPipeline: pipeline } });
  const pass = await ok(raw, 'create', { type: 'PassThrough', constructorParams: { mediaPipeline: pipeline } });
  await ok(raw, 'invoke', { object: ep, operation: 'connect', operationParams: { sink: pass } });
  return { pipeline, ep };
}

async function placement() {
  const expect = need('CLUSTER_EXPECT').split(',');
  const count = Number(process.env.CLUSTER_PIPELINES || 6);
  const { client } = await h.connectClient(ENTRY);
  const made = [];
  try {
    // The official client, unpinned: placement picks among the serving nodes.
    for (let i = 0; i < count; i++) {
      const pipeline = await client.create('MediaPipeline');
      const ep = await pipeline.create('WebRtcEndpoint');
      const pass = await pipeline.create('PassThrough');
      await h.callback(ep, 'connect', pass);
      const node = await ownerOf(pipeline.id);
      assert.ok(expect.includes(node), `${pipeline.id} landed on ${node}, not on ${expect.join(' or ')}`);
      made.push({ pipeline, node, ep: ep.id });
    }
    const per = Object.fromEntries(expect.map((n) => [n, made.filter((m) => m.node === n).length]));
    say(`${count} unpinned pipelines through the entry: ${JSON.stringify(per)}`);
    for (const n of expect) assert.ok(per[n] > 0, `no pipeline landed on ${n}: ${JSON.stringify(per)}`);
    // The entry's ServerManager lists the cluster's pipelines, each once (docs/cluster.md,
    // "ServerManager"), as the official client reads them.
    const listed = (await (await client.getServerManager()).getPipelines()).map((p) => p.id);
    for (const m of made) {
      const n = listed.filter((id) => id === m.pipeline.id).length;
      assert.equal(n, 1, `the entry lists ${m.pipeline.id} (on ${m.node}) once: ${n} times in ${listed.length}`);
    }
    say(`the entry's ServerManager lists all ${made.length} (${listed.length} pipelines in the cluster)`);
    await pinned(expect);
    for (const m of made) await h.callback(m.pipeline, 'release');
    for (const m of made) {
      await h.waitFor(() => redis('GET', `fluo:pipeline:${m.pipeline.id}`) === '', 3000, `${m.pipeline.id}'s record deleted`);
    }
    say('released through the entry: every ownership record deleted');
  } finally {
    await h.closeClient(client);
  }
}

/** Milliseconds of `n` getName calls one at a time on `object` over a connection to `url`. */
async function getNameTimes(url, object, n) {
  const raw = await h.RawClient.open(url);
  const times = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = process.hrtime.bigint();
      await ok(raw, 'invoke', { object, operation: 'getName' });
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  } finally {
    await raw.close();
  }
  return times;
}

/** `clients` connections to `url` at once, each `n` getName calls on `object`: every time, sorted. */
async function concurrentTimes(url, object, clients, n) {
  const all = await Promise.all(Array.from({ length: clients }, () => getNameTimes(url, object, n)));
  return all.flat().sort((a, b) => a - b);
}

/**
 * Signalling forwarding overhead: CLUSTER_SIG_CLIENTS (default 10) connections at once, each
 * CLUSTER_SIG_REQUESTS (default 20) getName calls one after another, on an endpoint of another
 * node: through the entry (over the node-to-node link, where the shaping's delay is) and on
 * direct connections to its node (CLUSTER_NODES: id=ws://... pairs). CLUSTER_LINK_RTT_MS: what
 * the shaping adds to a forwarded request's round trip (the entry's link to the owner, both
 * ways), reported beside the difference and subtracted from it.
 */
async function forwardingCost({ node, ep }) {
  const urls = Object.fromEntries(need('CLUSTER_NODES').split(',').map((kv) => kv.split('=')));
  const clients = Number(process.env.CLUSTER_SIG_CLIENTS || 10);
  const n = Number(process.env.CLUSTER_SIG_REQUESTS || 20);
  const rtt = Number(process.env.CLUSTER_LINK_RTT_MS || 0);
  // One untimed round each way first: connections and the link warm.
  await getNameTimes(ENTRY, ep, 2);
  await getNameTimes(urls[node], ep, 2);
  const via = await concurrentTimes(ENTRY, ep, clients, n);
  const direct = await concurrentTimes(urls[node], ep, clients, n);
  const p = (t, q) => t[Math.min(t.length - 1, Math.floor(q * t.length))];
  const f = (x) => x.toFixed(1);
  const over = [p(via, 0.5) - p(direct, 0.5), p(via, 0.99) - p(direct, 0.99)];
  say(`getName, ${clients} clients at once x ${n} each on ${node}'s endpoint, p50/p99/max: through the entry ${f(p(via, 0.5))}/${f(p(via, 0.99))}/${f(p(via, 1))} ms, direct ${f(p(direct, 0.5))}/${f(p(direct, 0.99))}/${f(p(direct, 1))} ms; forwarding adds ${f(over[0])}/${f(over[1])} ms, of which the shaping's ${rtt} ms round trip on the link: ${f(over[0] - rtt)}/${f(over[1] - rtt)} ms without it`);
  figure('signalling_via_entry_p50_p99_ms', `${f(p(via, 0.5))}/${f(p(via, 0.99))}`);
  figure('signalling_direct_p50_p99_ms', `${f(p(direct, 0.5))}/${f(p(direct, 0.99))}`);
  figure('signalling_overhead_p50_p99_ms', `${f(over[0])}/${f(over[1])}`);
  figure('signalling_overhead_less_link_rtt_p50_p99_ms', `${f(over[0] - rtt)}/${f(over[1] - rtt)}`);
}

/** forwardingCost on an endpoint of a pipeline pinned to CLUSTER_OTHER through the entry. */
async function signalling() {
  const node = need('CLUSTER_OTHER');
  const raw = await h.RawClient.open(ENTRY);
  try {
    const { pipeline, ep } = await rawPipeline(raw, node);
    assert.equal(await ownerOf(pipeline), node);
    await forwardingCost({ node, ep });
    await ok(raw, 'release', { object: pipeline });
  } finally {
    await raw.close();
  }
}

/** One raw pipeline pinned to each node, through the entry. */
async function pinned(nodes) {
  const raw = await h.RawClient.open(ENTRY);
  try {
    for (const n of nodes) {
      const { pipeline } = await rawPipeline(raw, n);
      assert.equal(await ownerOf(pipeline), n, `a pipeline pinned to ${n}`);
      await ok(raw, 'release', { object: pipeline });
    }
    say(`pinned pipelines through the entry landed on ${nodes.join(', ')}`);
  } finally {
    await raw.close();
  }
}

/** The error code of a JSON-RPC answer (0 for a success). */
const codeOf = (answer) => (answer.error ? answer.error.code : 0);

async function kill(pid) {
  const victim = need('CLUSTER_VICTIM');
  const other = need('CLUSTER_OTHER');
  // A raw client holding a pipeline on the victim, subscribed to its Error.
  const holder = await h.RawClient.open(ENTRY);
  const { pipeline, ep } = await rawPipeline(holder, victim);
  assert.equal(await ownerOf(pipeline), victim);
  const sessionId = holder.messages.map((m) => m.result && m.result.sessionId).find(Boolean);
  assert.ok(sessionId, "no session id in the holder's answers");
  await ok(holder, 'subscribe', { object: pipeline, type: 'Error' });
  // A bystander holding a pipeline on another node only.
  const bystander = await h.RawClient.open(ENTRY);
  const elsewhere = await rawPipeline(bystander, other);
  assert.equal(await ownerOf(elsewhere.pipeline), other);
  // The official client with a pipeline on the victim, `pipeline.on('Error', ...)`.
  const { client } = await h.connectClient(ENTRY);
  const kept = await officialOn(client, victim);
  const officialEvent = new Promise((resolve) => kept.pipeline.on('Error', (e) => resolve({ e, at: Date.now() })));
  // The application's call on the victim: a clip played to a WebRTC peer, media checked.
  await h.withTimeout(play(kept.pipeline, kept.ep), 20000, "the application's call on the victim");
  // Told of the death (its pipeline's Error), it makes its call again.
  const recreated = officialEvent.then(() => recreate(client));
  recreated.catch(() => {});
  // Its subscribe went out first on the same connection and link: done once this answers.
  await h.callback(kept.ep, 'getName');
  const connection = [];
  for (const ev of ['disconnected', 'reconnected', 'connectionFailed', 'disconnect']) {
    client.on(ev, (arg) => connection.push(`${ev}${arg === undefined ? '' : ` (${arg})`}`));
  }
  // The victim stopped, so that a request of each client is in flight there, then killed.
  await stop(pid);
  const rawInFlight = holder.call('invoke', { object: ep, operation: 'getName' });
  const officialInFlight = h.callback(kept.ep, 'getName').then(
    () => ({ err: null, at: Date.now() }),
    (err) => ({ err, at: Date.now() }),
  );
  await h.sleep(300);
  const quietSince = bystander.messages.length;
  process.kill(pid, 'SIGKILL');
  const t0 = Date.now();
  const secs = (at) => ((at - t0) / 1000).toFixed(3);
  const answer = await h.withTimeout(rawInFlight, 3500, "the holder's request in flight answered");
  const answeredAt = Date.now();
  assert.equal(codeOf(answer), 40004, `the request in flight: ${JSON.stringify(answer)}`);
  assert.ok(answeredAt - t0 < 3500, `the request in flight answered ${answeredAt - t0} ms after the kill`);
  const isError = (m) => m.params && m.params.value && m.params.value.type === 'Error' && m.params.value.object === pipeline;
  const event = await h.waitFor(() => holder.notifications.find(isError), 3500, "the holder's Error event");
  const eventAt = Date.now();
  assert.ok(eventAt - t0 < 3500, `the holder's Error event ${eventAt - t0} ms after the kill`);
  const data = event.params.value.data;
  assert.equal(data.type, 'NODE_DOWN', JSON.stringify(event));
  assert.equal(data.errorCode, 40004, JSON.stringify(event));
  assert.equal(data.source, pipeline, JSON.stringify(event));
  say(`SIGKILL ${victim}: the holder's request in flight answered 40004 after ${secs(answeredAt)} s, its pipeline's Error event (NODE_DOWN) after <= ${secs(eventAt)} s: ${data.description}`);
  figure('inflight_answered_s', secs(answeredAt));
  figure('error_event_s', secs(eventAt));
  await officialClient(kept, officialEvent, officialInFlight, t0);
  // Nothing for the bystander; every connection stays open and serves.
  await h.sleep(1000);
  assert.deepEqual(bystander.messages.slice(quietSince), [], 'the bystander was sent something');
  // The request in flight was answered once (not again, by a node that took it over).
  const again = holder.unmatched.filter((m) => JSON.stringify(m.id) === JSON.stringify(answer.id));
  assert.deepEqual(again, [], 'a second answer to the request in flight');
  await ok(bystander, 'invoke', { object: elsewhere.ep, operation: 'getName' });
  await ok(bystander, 'release', { object: elsewhere.pipeline });
  // The holder's connection is open: its request about the dead node's object is answered
  // (not on another node: its session would then live there, and connect {sessionId} below
  // would rightly be taken).
  const later = await holder.call('invoke', { object: ep, operation: 'getName' });
  assert.equal(codeOf(later), 40004, `the holder after the kill: ${JSON.stringify(later)}`);
  // Pinned: placement may still pick the dead node (listed for up to 3 s), and the entry,
  // draining, would refuse the fallback.
  const fresh = await client.create('MediaPipeline', { fluoNode: other });
  assert.equal(await ownerOf(fresh.id), other);
  await h.callback(fresh, 'release');
  assert.deepEqual(connection, [], 'the official client lost its connection');
  say(`connections kept: the holder answered 40004, the bystander (sent nothing) served on ${other}, kurento-client (no disconnection) made a pipeline on ${other}`);
  await codesUntilGone(ep, sessionId, t0, victim);
  await checkRecreated(recreated, victim, secs);
  await bystander.close();
  await holder.close();
  await h.closeClient(client);
}

/**
 * The application's call made again on its pipeline's Error event (`recreate`): on a live node,
 * never refused while one had room; reports when its peer's first media packet (audio or video)
 * was decrypted, `secs` of a wall clock: seconds after the kill.
 */
async function checkRecreated(recreated, victim, secs) {
  const remade = await recreated;
  say(`re-created: first media packet ${secs(remade.first)} s after the kill (the application's new pipeline on ${remade.node}, ${remade.attempts} attempt(s) from its Error event${remade.failed.length ? `; failed: ${remade.failed.join('; ')}` : ''})`);
  figure('recreated_first_media_s', secs(remade.first));
  figure('recreated_attempts', remade.attempts);
  assert.notEqual(remade.node, victim, 'the re-created pipeline is on the dead node');
  // While the dead node's record lives (up to 3 s), placement may pick it: the entry places the
  // create again among the live nodes, so the application is never refused for that (it was:
  // 40009 from the draining entry, for up to 2.25 s after the kill).
  const refused = remade.failed.filter((f) => /40009/.test(f));
  assert.deepEqual(refused, [], 'a create refused while a live node had room');
  await h.callback(remade.pipeline, 'release');
}

/**
 * A receiving WebRTC peer (`fluo-bench recv`, a thin viewer): {offer: its SDP offer, answer(sdp),
 * first: the wall clock (ms) at which its first media packet was decrypted, stop()}.
 */
function recvPeer() {
  const child = spawn(need('CLUSTER_BENCH'), ['recv', '--bind', need('CLUSTER_PEER_IP'), '--wait', '20'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const got = {};
  const offer = new Promise((resolve, reject) => Object.assign(got, { offer: resolve, noOffer: reject }));
  const first = new Promise((resolve, reject) => Object.assign(got, { first: resolve, noFirst: reject }));
  offer.catch(() => {});
  first.catch(() => {});
  let buf = '';
  child.stdout.on('data', (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith('OFFER ')) got.offer(JSON.parse(line.slice(6)));
      else if (line.startsWith('FIRST_MEDIA_WALL_MS ')) got.first(Number(line.slice(20)));
    }
  });
  child.on('exit', (code) => {
    const why = new Error(`fluo-bench recv exited ${code} without ${code === 1 ? 'media' : 'its offer'}`);
    got.noOffer(why);
    got.noFirst(why);
  });
  child.on('error', (e) => {
    got.noOffer(e);
    got.noFirst(e);
  });
  return {
    offer,
    first,
    answer: (sdp) => child.stdin.write(`${JSON.stringify(sdp)}\n`),
    stop: () => child.kill(),
  };
}

/**
 * A PlayerEndpoint of CLUSTER_CLIP in `pipeline` playing to `ep` (a WebRtcEndpoint there),
 * negotiated with a recvPeer; the wall clock (ms) of the peer's first decrypted media packet.
 */
async function play(pipeline, ep) {
  const peer = recvPeer();
  try {
    const player = await h.callback(pipeline, 'create', 'PlayerEndpoint', { uri: media.fileUri(need('CLUSTER_CLIP')) });
    await h.callback(player, 'connect', ep);
    const offer = await h.withTimeout(peer.offer, 5000, "the peer's offer");
    peer.answer(await h.callback(ep, 'processOffer', offer));
    await h.callback(player, 'play');
    return await h.withTimeout(peer.first, 20000, "the peer's first media");
  } finally {
    peer.stop();
  }
}

/**
 * What an application does when told its pipeline's node died: it makes its call again with
 * kurento-client through the same entry (unpinned: placement picks), trying again every 250 ms
 * when a step fails, for 20 s: {pipeline, node, first (wall ms of the first media), attempts}.
 */
async function recreate(client) {
  const t = Date.now();
  let attempts = 0;
  let last = null;
  const failed = [];
  while (Date.now() - t < 20000) {
    attempts += 1;
    let pipeline = null;
    try {
      pipeline = await h.callback(client, 'create', 'MediaPipeline');
      const ep = await h.callback(pipeline, 'create', 'WebRtcEndpoint');
      const first = await play(pipeline, ep);
      return { pipeline, node: await ownerOf(pipeline.id), first, attempts, failed };
    } catch (e) {
      last = e;
      failed.push(`${((Date.now() - t) / 1000).toFixed(3)} s: ${e.code || ''} ${e.message}`.slice(0, 200));
      if (pipeline) await h.callback(pipeline, 'release').catch(() => {});
      await h.sleep(250);
    }
  }
  throw new Error(`the re-created call: no media within 20 s (${attempts} attempts; the last: ${last && last.message})`);
}

/**
 * SIGSTOP to `pid`, then waits (2 s at most) until each of its threads is stopped: the signal
 * takes effect once one of them handles it, which a loaded machine may delay while the node
 * still answers.
 */
async function stop(pid) {
  process.kill(pid, 'SIGSTOP');
  const state = (task) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch (_) {
      return '?';
    }
  };
  await h.waitFor(() => {
    const tasks = fs.readdirSync(`/proc/${pid}/task`);
    return tasks.length > 0 && tasks.every((t) => state(t) === 'T');
  }, 2000, `every thread of ${pid} stopped`);
}

/**
 * A pipeline and a WebRtcEndpoint made by the official client on `node`. Unpinned creates
 * until placement picks it (the kill check does not depend on kurento-client's pin).
 */
async function officialOn(client, node) {
  const others = [];
  try {
    for (let i = 0; i < 8; i++) {
      const pipeline = await client.create('MediaPipeline');
      if ((await ownerOf(pipeline.id)) === node) return { pipeline, ep: await pipeline.create('WebRtcEndpoint') };
      others.push(pipeline);
    }
  } finally {
    for (const p of others) await h.callback(p, 'release');
  }
  throw new Error(`8 unpinned pipelines of kurento-client, none on ${node}`);
}

/**
 * The official client: its pipeline's Error event (NODE_DOWN) and its request in flight
 * answered with an error (40004), each within 3.5 s of the kill.
 */
async function officialClient(kept, officialEvent, officialInFlight, t0) {
  const { e, at } = await h.withTimeout(officialEvent, 3500, "kurento-client: pipeline.on('Error')");
  assert.ok(at - t0 < 3500, `kurento-client: pipeline.on('Error') ${at - t0} ms after the kill`);
  assert.equal(e.type, 'NODE_DOWN', JSON.stringify(e));
  assert.equal(e.errorCode, 40004, JSON.stringify(e));
  const done = await h.withTimeout(officialInFlight, 3500, 'kurento-client: its request in flight answered');
  assert.ok(done.err, 'kurento-client: getName on the dead node answered a success');
  assert.equal(done.err.code, 40004, `kurento-client: ${done.err.code} ${done.err.message}`);
  assert.ok(done.at - t0 < 3500, `kurento-client: its request in flight answered ${done.at - t0} ms after the kill`);
  const secs = (t) => ((t - t0) / 1000).toFixed(3);
  say(`kurento-client: pipeline.on('Error') got ${e.type} (${e.errorCode}) after ${secs(at)} s; its getName in flight ${done.err.code} after ${secs(done.at)} s`);
  figure('kurento_client_error_event_s', secs(at));
  figure('kurento_client_error_s', secs(done.at));
  // A request on the dead node's object after that: answered with an error too.
  let err = null;
  try {
    await h.withTimeout(h.callback(kept.ep, 'getName'), 3000, 'kurento-client getName');
  } catch (x) {
    err = x;
  }
  assert.ok(err && (err.code === 40004 || err.code === 40101), `kurento-client after the kill: ${err && err.code} ${err && err.message}`);
}

/**
 * Poll the dead node's endpoint and the holder's session on fresh connections every 500 ms:
 * 40004 (try again) until the node is gone for good, 40101 / 40007 after (docs/cluster.md,
 * "Dead or unreachable owners", "Reconnecting").
 */
async function codesUntilGone(ep, sessionId, t0, victim) {
  const raw = await h.RawClient.open(ENTRY);
  let gone = null;
  let connectGone = null;
  let slowest = 0;
  let recordGone = null;
  try {
    while (Date.now() - t0 < 22000 && (gone === null || connectGone === null)) {
      const t = Date.now();
      const code = codeOf(await raw.call('invoke', { object: ep, operation: 'getName' }));
      slowest = Math.max(slowest, Date.now() - t);
      const at = (Date.now() - t0) / 1000;
      if (gone === null) {
        assert.ok(code === 40004 || code === 40101, `getName at ${at} s: ${code}`);
        if (code === 40101) gone = at;
      } else {
        assert.equal(code, 40101, `getName at ${at} s after 40101 at ${gone} s`);
      }
      const other = await h.RawClient.open(ENTRY);
      const c = codeOf(await other.call('connect', { sessionId }));
      await other.close();
      if (connectGone === null) {
        assert.ok(c === 40004 || c === 40007, `connect {sessionId} at ${at} s: ${c}`);
        if (c === 40007) connectGone = (Date.now() - t0) / 1000;
      }
      if (recordGone === null && redis('EXISTS', `fluo:node:${victim}`) === '0') recordGone = at;
      await h.sleep(500);
    }
  } finally {
    await raw.close();
  }
  assert.ok(gone !== null, 'the dead node\'s endpoint never answered 40101 within 22 s');
  assert.ok(connectGone !== null, 'connect {sessionId} never answered 40007 within 22 s');
  say(`the dead node's record expired after <= ${recordGone} s; getName answered 40004 until ${gone} s, then 40101; connect {sessionId} 40004 until ${connectGone} s, then 40007; slowest answer ${slowest} ms`);
  figure('record_expired_s', recordGone);
  figure('gone_for_good_s', gone);
  figure('session_invalid_s', connectGone);
  figure('slowest_error_ms', slowest);
  assert.ok(slowest < 1500, `an error answer took ${slowest} ms`);
  assert.ok(gone >= 9 && gone <= 18, `40101 from ${gone} s after the kill, not 13-14 s`);
}

/** CLUSTER_NODES (id=ws://... pairs) as an object. */
const nodeUrls = () => Object.fromEntries(need('CLUSTER_NODES').split(',').map((kv) => kv.split('=')));

/**
 * Redis is down (killed at CLUSTER_KILLED_MS): an unpinned create through the entry is made on
 * the entry itself at once, a create pinned to CLUSTER_OTHER is made there from the entry's
 * last listing (docs/cluster.md, "Redis down or restarting"): where each was made, redis-back
 * reads in the store once the nodes claim them again (a ServerManager lists the cluster's
 * pipelines, so it cannot tell).
 * Leaves both pipelines' ids in CLUSTER_STATE for redis-back.
 */
async function redisDown() {
  const killed = Number(need('CLUSTER_KILLED_MS'));
  const entryNode = need('CLUSTER_ENTRY_NODE');
  const other = need('CLUSTER_OTHER');
  const answers = () => execFileSync('redis-cli', [...REDIS, 'PING'], { stdio: ['ignore', 'pipe', 'ignore'] });
  assert.throws(answers, 'Redis answers: it is not down');
  const into = () => ((Date.now() - killed) / 1000).toFixed(1);
  const raw = await h.RawClient.open(ENTRY);
  try {
    let t = Date.now();
    const { pipeline: unpinned } = await h.withTimeout(rawPipeline(raw), 3000, 'an unpinned pipeline through the entry while Redis is down');
    const unpinnedMs = Date.now() - t;
    t = Date.now();
    const { pipeline: pinned } = await h.withTimeout(rawPipeline(raw, other), 3000, `a pipeline pinned to ${other} through the entry while Redis is down`);
    const pinnedMs = Date.now() - t;
    // An object the entry never saw (made by a client of the other node itself meanwhile): which
    // node holds it is not known, so the entry answers 40004 (try again) at once, not 40101.
    const direct = await h.RawClient.open(nodeUrls()[other]);
    const unseen = await rawPipeline(direct).finally(() => direct.close());
    t = Date.now();
    const asked = await h.withTimeout(raw.call('invoke', { object: unseen.ep, operation: 'getName' }), 3000, "a request about an object the entry never saw");
    const unseenMs = Date.now() - t;
    assert.equal(codeOf(asked), 40004, `the entry about ${other}'s object it never saw, Redis down: ${JSON.stringify(asked)}`);
    assert.ok(unseenMs < 1000, `answered after ${unseenMs} ms`);
    fs.writeFileSync(need('CLUSTER_STATE'), JSON.stringify({ unpinned, pinned, unseen }));
    say(`Redis down ${into()} s: an unpinned pipeline (WebRtcEndpoint, PassThrough) through ${entryNode} made there in ${unpinnedMs} ms; one pinned to ${other} made there in ${pinnedMs} ms; a request about an object of ${other} the entry never saw answered 40004 in ${unseenMs} ms`);
    figure('redis_down_unpinned_create_ms', unpinnedMs);
    figure('redis_down_pinned_create_ms', pinnedMs);
    figure('redis_down_unseen_40004_ms', unseenMs);
  } finally {
    await raw.close();
  }
}

/**
 * Redis started again (at CLUSTER_SINCE_MS, empty): within 10 s every node of CLUSTER_NODES is
 * listed again, the pipelines redis-down made are claimed by their nodes, and unpinned creates
 * through the entry (each with a WebRtcEndpoint, one every 100 ms until each node of
 * CLUSTER_EXPECT has one) are placed on the other nodes again, not only on the entry.
 */
async function redisBack() {
  const since = Number(need('CLUSTER_SINCE_MS'));
  const expect = need('CLUSTER_EXPECT').split(',');
  const entryNode = need('CLUSTER_ENTRY_NODE');
  const state = JSON.parse(fs.readFileSync(need('CLUSTER_STATE'), 'utf8'));
  const at = () => (Date.now() - since) / 1000;
  const ids = Object.keys(nodeUrls());
  await h.waitFor(() => ids.every((n) => redis('EXISTS', `fluo:node:${n}`) === '1'), 10000, 'every node listed again');
  const listed = at();
  assert.equal(await ownerOf(state.unpinned), entryNode, "the outage's unpinned pipeline claimed again by the entry");
  assert.equal(await ownerOf(state.pinned), need('CLUSTER_OTHER'), "the outage's pinned pipeline claimed again by its node");
  const claimed = at();
  const raw = await h.RawClient.open(ENTRY);
  const made = [state.unpinned, state.pinned, state.unseen.pipeline];
  const landed = {};
  let onEntry = 0;
  let unseenFound = null;
  try {
    // The object the entry never saw: found through the store once its node claimed it again
    // (40004 until then, never 40101).
    while (unseenFound === null) {
      assert.ok(at() < 10, 'the object the entry never saw not found through it 10 s after Redis restarted');
      const answer = await raw.call('invoke', { object: state.unseen.ep, operation: 'getName' });
      if (codeOf(answer) === 0) unseenFound = at();
      else assert.equal(codeOf(answer), 40004, `the object the entry never saw, Redis back: ${JSON.stringify(answer)}`);
      if (unseenFound === null) await h.sleep(100);
    }
    while (expect.some((n) => landed[n] === undefined)) {
      assert.ok(at() < 10, `placement across the nodes not back 10 s after Redis restarted: ${JSON.stringify(landed)}, ${onEntry} on ${entryNode}`);
      const { pipeline } = await rawPipeline(raw);
      made.push(pipeline);
      const node = await ownerOf(pipeline);
      if (node === entryNode) onEntry += 1;
      else if (expect.includes(node) && landed[node] === undefined) landed[node] = at();
      else if (!expect.includes(node)) assert.fail(`an unpinned pipeline landed on ${node}`);
      await h.sleep(100);
    }
    for (const p of made) await ok(raw, 'release', { object: p });
  } finally {
    await raw.close();
  }
  const placed = Math.max(...Object.values(landed));
  const secs = (x) => x.toFixed(2);
  say(`Redis back: every node listed again after ${secs(listed)} s, the outage's pipelines claimed again by ${secs(claimed)} s, the object the entry never saw found through it after ${secs(unseenFound)} s, unpinned creates through ${entryNode} placed on ${expect.map((n) => `${n} after ${secs(landed[n])} s`).join(', ')} (${onEntry} made on ${entryNode} first)`);
  figure('redis_back_listed_s', secs(listed));
  figure('redis_back_placed_s', secs(placed));
}

process.on('uncaughtException', (err) => {
  console.error(`cluster-check: FAILED: uncaught in the client libraries: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});

async function main() {
  const [mode, arg] = process.argv.slice(2);
  if (mode === 'placement') await placement();
  else if (mode === 'signalling') await signalling();
  else if (mode === 'kill' && /^\d+$/.test(arg || '')) await kill(Number(arg));
  else if (mode === 'redis-down') await redisDown();
  else if (mode === 'redis-back') await redisBack();
  else throw new Error('usage: cluster-check.js placement | signalling | kill PID | redis-down | redis-back');
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`cluster-check: FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
