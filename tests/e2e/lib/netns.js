'use strict';
// Network namespaces for the bandwidth tests (root, iproute2): a namespace joined to the host
// by a veth pair on a /30 of 10.252.0.0/16 (a free one; the repository's other namespaces
// use 10.199.0.0/24, cluster-test, and 10.200-10.249, fluo-testkit's turn_netns), its downlink shaped on the host side of the pair with tbf
// (this machine's kernel has tbf and htb, no netem), and a Chromium started inside it.
//
//   netnsUnavailable()          -> null, or why namespaces cannot be made here (not root, no ip
//                                  or tc); a test fails with it under CI=true, skips otherwise
//   createNetns(tag)            -> {name, hostIf, hostAddr, nsAddr, limit(kbit), unlimit(),
//                                  qdisc(), remove()}: Fluo is to listen on hostIf
//                                  (--network-interfaces lo,<hostIf>) before it starts, as it
//                                  gathers its candidates once
//   browserIn(ns, dir)          -> launchBrowser's {newPage, close, ...} for a Chromium whose
//                                  every process runs inside the namespace (its wrapper execs
//                                  `ip netns exec`; playwright's pipe crosses it)
//   setupWithNetns(label, tags, opts)
//                               -> lib/env.js's setup() with a namespace and its browser per
//                                  tag (env.netns[tag] = {ns, browser}), all removed by
//                                  env.teardown()
//
// Everything made is removed by remove(), and at the process's exit or on SIGINT / SIGTERM if
// a test did not get there: deleting the namespace deletes its end of the pair, and the host
// end with it. Only what this process made is touched.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { launchBrowser, log, setup } = require('./env');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const made = new Set();
let hooked = false;
let counter = 0;

function run(cmd, args) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, cmd);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

function netnsUnavailable() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root';
  for (const tool of ['ip', 'tc']) if (!which(tool)) return `${tool} (iproute2) not found`;
  return null;
}

function removeSync(name) {
  try {
    run('ip', ['netns', 'del', name]);
  } catch (_) {
    // Gone already.
  }
  made.delete(name);
}

function hookExit() {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const name of [...made]) removeSync(name);
  });
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      for (const name of [...made]) removeSync(name);
      process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
    });
  }
}

// A /30 of 10.252.0.0/16 no interface of the host has an address in, starting at a place of
// this process's own (two suites at once pick different ones).
function freeSubnet() {
  const used = new Set();
  for (const m of run('ip', ['-4', '-o', 'addr', 'show']).matchAll(/inet (10\.203\.(\d+)\.(\d+))\//g)) {
    used.add(`${m[2]}.${Number(m[3]) & ~3}`);
  }
  const start = (process.pid * 7 + counter * 4) % 16384;
  for (let i = 0; i < 16384; i++) {
    const n = (start + i) % 16384;
    const [third, base] = [n >> 6, (n & 63) * 4];
    if (!used.has(`${third}.${base}`)) return { hostAddr: `10.252.${third}.${base + 1}`, nsAddr: `10.252.${third}.${base + 2}` };
  }
  throw new Error('no free /30 in 10.252.0.0/16');
}

// Namespaces (with their veth pairs) left by an earlier run of this helper whose process
// is gone (killed with SIGKILL: no exit hook ran) are removed before a new one is made.
function reapStale() {
  let names = '';
  try {
    names = run('ip', ['netns', 'list']);
  } catch (_) {
    return;
  }
  for (const m of names.matchAll(/^fluo-e2e-(\d+)-\S+/gm)) {
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (e) {
      alive = e.code === 'EPERM';
    }
    if (!alive) removeSync(m[0]);
  }
}

function createNetns(tag) {
  hookExit();
  reapStale();
  counter += 1;
  const name = `fluo-e2e-${process.pid}-${tag}`;
  // Interface names: at most 15 characters.
  const id = `${process.pid.toString(36)}${counter}`;
  const hostIf = `fe${id}h`;
  const nsIf = `fe${id}n`;
  const { hostAddr, nsAddr } = freeSubnet();
  run('ip', ['netns', 'add', name]);
  made.add(name);
  try {
    run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name]);
    run('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', hostIf]);
    run('ip', ['link', 'set', hostIf, 'up']);
    run('ip', ['-n', name, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf]);
    run('ip', ['-n', name, 'link', 'set', nsIf, 'up']);
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  } catch (e) {
    removeSync(name);
    throw new Error(`making namespace ${name}: ${e.message}`);
  }
  log(`namespace ${name}: ${nsIf} ${nsAddr} <-> ${hostIf} ${hostAddr} on the host`);
  const ns = {
    name,
    hostIf,
    hostAddr,
    nsAddr,
    // Shapes what the host sends into the namespace: a token bucket of `kbit` kbit/s with a
    // queue of `queueMs` at that rate (what does not fit is dropped), burst 5 kB.
    limit(kbit, queueMs = 200) {
      const limitBytes = Math.max(6000, Math.round((kbit * 1000 * queueMs) / 8000));
      run('tc', ['qdisc', 'replace', 'dev', hostIf, 'root', 'tbf', 'rate', `${kbit}kbit`, 'burst', '5000', 'limit', String(limitBytes)]);
      log(`${name}: downlink limited to ${kbit} kbit/s (tbf, queue ${limitBytes} bytes)`);
    },
    unlimit() {
      run('tc', ['qdisc', 'del', 'dev', hostIf, 'root']);
      log(`${name}: downlink limit removed`);
    },
    // The host side's root qdisc as tc shows it, with its counters (sent, dropped, backlog).
    qdisc() {
      try {
        return run('tc', ['-s', 'qdisc', 'show', 'dev', hostIf]).replace(/\s+/g, ' ').trim();
      } catch (e) {
        return `(tc: ${e.message})`;
      }
    },
    remove() {
      removeSync(name);
    },
  };
  return ns;
}

// A Chromium in `ns`: playwright starts the wrapper, which enters the namespace and execs
// Chromium (same pid, same pipe).
async function browserIn(ns, dir) {
  const wrapper = path.join(dir, `chromium-${ns.name}.sh`);
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec '${ns.name}' '${CHROMIUM}' "$@"\n`, { mode: 0o755 });
  return launchBrowser(dir, [], { executablePath: wrapper, profile: `chromium-profile-${ns.name}` });
}

// lib/env.js's setup() with namespaces: one per tag, made before Fluo starts (it gathers its
// candidates once) and Fluo listening on loopback and their host ends; env.netns[tag] is
// {ns, browser} (a Chromium inside it). teardown() closes those browsers, then what setup()
// started, then removes the namespaces; so does a failure half-way.
async function setupWithNetns(label, tags, { fluoArgs = () => [], ...rest } = {}) {
  const netns = {};
  let env = null;
  try {
    for (const tag of tags) netns[tag] = { ns: createNetns(tag), browser: null };
    const ifs = ['lo', ...tags.map((t) => netns[t].ns.hostIf)].join(',');
    env = await setup(label, { ...rest, fluoArgs: (dir) => ['--network-interfaces', ifs, ...fluoArgs(dir)] });
    for (const tag of tags) netns[tag].browser = await browserIn(netns[tag].ns, env.dir);
  } catch (err) {
    for (const n of Object.values(netns)) if (n.browser) await n.browser.close();
    if (env) await env.teardown();
    for (const n of Object.values(netns)) n.ns.remove();
    throw err;
  }
  const inner = env.teardown;
  env.netns = netns;
  env.teardown = async () => {
    for (const n of Object.values(netns)) if (n.browser) await n.browser.close();
    await inner();
    for (const n of Object.values(netns)) n.ns.remove();
  };
  return env;
}

module.exports = { netnsUnavailable, createNetns, browserIn, setupWithNetns };
