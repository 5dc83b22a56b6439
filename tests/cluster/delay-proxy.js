'use strict';
// A TCP relay that holds every chunk DELAY_MS in each direction: make cluster-test's stand-in
// for `tc netem delay` on the node-to-node links when the kernel has no sch_netem
// (scripts/cluster-test.sh sends each node's connections to another node's link port here
// with an nftables DNAT rule).
//   node delay-proxy.js DELAY_MS LISTEN_HOST:PORT=TARGET_HOST:PORT ...
// Chunks go out in the order they came (timers of one duration fire in order); a close or
// reset on one side reaches the other side DELAY_MS later.

const net = require('node:net');

const [delayArg, ...routes] = process.argv.slice(2);
const DELAY = Number(delayArg);
if (!Number.isFinite(DELAY) || DELAY < 0 || routes.length === 0) {
  console.error('usage: delay-proxy.js DELAY_MS LISTEN_HOST:PORT=TARGET_HOST:PORT ...');
  process.exit(2);
}

function hostPort(text) {
  const i = text.lastIndexOf(':');
  return { host: text.slice(0, i), port: Number(text.slice(i + 1)) };
}

/** Everything `from` sends reaches `to` DELAY ms later, its end and its errors too. */
function carry(from, to) {
  from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), DELAY));
  from.on('end', () => setTimeout(() => to.destroyed || to.end(), DELAY));
  from.on('error', () => setTimeout(() => to.destroy(), DELAY));
  from.on('close', () => setTimeout(() => to.destroy(), DELAY + 1));
}

for (const route of routes) {
  const [listen, target] = route.split('=').map(hostPort);
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    carry(client, upstream);
    carry(upstream, client);
  });
  server.on('error', (err) => {
    console.error(`delay-proxy: ${route}: ${err.message}`);
    process.exit(1);
  });
  server.listen(listen.port, listen.host);
}
console.log(`delay-proxy: ${DELAY} ms on ${routes.join(' ')}`);
