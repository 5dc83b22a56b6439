'use strict';
// A UDP relay that delays every datagram by `delayMs` each way, for measuring round trips
// against a browser on one machine (no netem here): the media server announces the relay's
// address (--external-ipv4, same port), and the peer's datagrams reach it from the relay's own
// sockets (one per peer address), so every packet of the call crosses the relay both ways.
//
//   const p = await startDelayProxy({ listen: {address, port}, target: {address, port}, delayMs })
//   p.forwarded  -> datagrams relayed so far, each way: {toTarget, toPeer}
//   await p.close()

const dgram = require('node:dgram');

function bound(sock, port, address) {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, address, () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

async function startDelayProxy({ listen, target, delayMs }) {
  const front = await bound(dgram.createSocket('udp4'), listen.port, listen.address);
  const backs = new Map(); // peer "ip:port" -> Promise<socket towards the target>
  const forwarded = { toTarget: 0, toPeer: 0 };
  const timers = new Set();
  const later = (fn) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, delayMs);
    timers.add(t);
  };
  function backFor(rinfo) {
    const key = `${rinfo.address}:${rinfo.port}`;
    if (!backs.has(key)) {
      const sock = dgram.createSocket('udp4');
      sock.on('message', (msg) => later(() => {
        forwarded.toPeer++;
        front.send(msg, rinfo.port, rinfo.address);
      }));
      sock.on('error', () => {});
      backs.set(key, bound(sock, 0, listen.address));
    }
    return backs.get(key);
  }
  front.on('message', (msg, rinfo) => {
    const back = backFor(rinfo);
    later(() => back.then((sock) => {
      forwarded.toTarget++;
      sock.send(msg, target.port, target.address);
    }));
  });
  front.on('error', () => {});
  return {
    forwarded,
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const b of backs.values()) (await b).close();
      front.close();
    },
  };
}

// A UDP port free on `address` now.
async function freeUdpPort(address) {
  const s = await bound(dgram.createSocket('udp4'), 0, address);
  const { port } = s.address();
  s.close();
  return port;
}

module.exports = { startDelayProxy, freeUdpPort };
