'use strict';
// Rooms shared by the group-call and speaker-switch applications: a named room owns one
// MediaPipeline (and, when the application wants one, a hub made with it: Composite,
// DispatcherOneToMany); participants join under a unique name, each with any number of
// WebRtcEndpoints keyed by a name of the application's choice (its own endpoint, or the
// name of the participant it receives). The last participant to leave releases the room's
// pipeline, which releases everything in it.
//
// `ctx` holds server.js's kurento-client plumbing: { getKurentoClient, IceCandidate,
// errorText, releaseQuietly, log }.

const NAME = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_QUEUED_CANDIDATES = 64;

function checkName(what, value) {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new Error(`Bad ${what} ${JSON.stringify(value)}: 1 to 32 letters, digits, '-' or '_'`);
  }
  return value;
}

class Participant {
  constructor(rooms, room, session, name) {
    this.rooms = rooms;
    this.room = room;
    this.session = session;
    this.name = name;
    this.left = false;
    this.endpoints = new Map(); // key -> WebRtcEndpoint
    this.queues = new Map(); // key -> browser candidates received before the endpoint
    this.port = null; // HubPort, for rooms with a hub
  }

  send(message) {
    if (!this.left) this.session.send(message);
  }

  // A browser candidate for the endpoint `key`: straight to it once it exists.
  onBrowserCandidate(key, candidate) {
    const c = this.rooms.ctx.IceCandidate(candidate);
    const endpoint = this.endpoints.get(key);
    if (endpoint) {
      endpoint.addIceCandidate(c).catch((error) =>
        this.session.sendError(`addIceCandidate failed: ${this.rooms.ctx.errorText(error)}`));
      return;
    }
    // Only for endpoints this participant can have (its own, another participant's), and a
    // bounded number: a browser cannot grow the server's memory with made-up names.
    if (key !== this.name && !this.room.participants.has(key)) return;
    if (!this.queues.has(key)) this.queues.set(key, []);
    const queue = this.queues.get(key);
    if (queue.length < MAX_QUEUED_CANDIDATES) queue.push(c);
  }

  // Makes `endpoint` this participant's endpoint `key`: its candidates go to the browser
  // tagged with `key`, the browser's queued ones go to it.
  async adopt(key, endpoint) {
    this.endpoints.set(key, endpoint);
    endpoint.on('IceCandidateFound', (event) => {
      this.send({ id: this.rooms.candidateId, name: key, candidate: event.candidate });
    });
    const queued = this.queues.get(key) || [];
    this.queues.delete(key);
    for (const c of queued) await endpoint.addIceCandidate(c);
  }

  releaseEndpoint(key) {
    const endpoint = this.endpoints.get(key);
    this.endpoints.delete(key);
    this.queues.delete(key);
    this.rooms.ctx.releaseQuietly(endpoint, `endpoint ${key} of ${this.name}`);
  }
}

class Rooms {
  // label: for logs; hubType: 'Composite', 'DispatcherOneToMany' or null; candidateId: the
  // id of the candidate messages both ways.
  constructor(ctx, { label, hubType = null, candidateId }) {
    this.ctx = ctx;
    this.label = label;
    this.hubType = hubType;
    this.candidateId = candidateId;
    this.rooms = new Map(); // name -> room
  }

  // Registers `name` in room `roomName` at once (so a second join under that name fails and
  // the room cannot be emptied meanwhile); `options` are kept by a new room (its mode).
  // Returns the participant; `await participant.room.ready` gives { pipeline, hub }.
  join(session, roomName, name, options = {}) {
    checkName('room name', roomName);
    checkName('participant name', name);
    let room = this.rooms.get(roomName);
    if (!room) {
      room = { name: roomName, options, participants: new Map(), ready: null, state: {} };
      room.ready = this.createMedia(room);
      room.ready.catch(() => {});
      this.rooms.set(roomName, room);
      this.ctx.log(`${this.label}: room ${roomName} opened ${JSON.stringify(options)}`);
    }
    if (room.participants.has(name)) throw new Error(`${name} is already in room ${roomName}`);
    const participant = new Participant(this, room, session, name);
    room.participants.set(name, participant);
    return participant;
  }

  async createMedia(room) {
    const client = await this.ctx.getKurentoClient();
    const pipeline = await client.create('MediaPipeline');
    if (this.rooms.get(room.name) !== room) {
      // Everybody left before the pipeline existed.
      this.ctx.releaseQuietly(pipeline, `pipeline of room ${room.name}`);
      throw new Error(`room ${room.name} was closed`);
    }
    const hub = this.hubType ? await pipeline.create(this.hubType) : null;
    return { pipeline, hub };
  }

  // Others in the participant's room, in joining order.
  others(participant) {
    return [...participant.room.participants.values()].filter((p) => p !== participant && !p.left);
  }

  broadcast(room, message) {
    for (const p of room.participants.values()) p.send(message);
  }

  // Releases what the participant owns; the last one out releases the room's pipeline.
  leave(participant) {
    if (participant.left) return;
    const { room } = participant;
    for (const key of [...participant.endpoints.keys()]) participant.releaseEndpoint(key);
    this.ctx.releaseQuietly(participant.port, `hub port of ${participant.name}`);
    participant.port = null;
    participant.left = true;
    room.participants.delete(participant.name);
    if (room.participants.size === 0 && this.rooms.get(room.name) === room) {
      this.rooms.delete(room.name);
      this.ctx.log(`${this.label}: room ${room.name} closed`);
      room.ready.then(({ pipeline }) => this.ctx.releaseQuietly(pipeline, `pipeline of room ${room.name}`), () => {});
    }
  }
}

module.exports = { Rooms, checkName };
