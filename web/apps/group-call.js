'use strict';
// group-call: any number of participants in a named room, in one of two modes chosen by
// whoever opens the room:
//   sfu : each participant sends to one WebRtcEndpoint and receives every other participant
//         through one WebRtcEndpoint each (sender's endpoint -> receiver's endpoint), as
//         Kurento's group-call tutorial does;
//   mcu : each participant has one WebRtcEndpoint connected both ways to a HubPort of the
//         room's Composite, and receives the one mixed stream (a grid of everyone's video,
//         everyone else's audio).
//
// Messages (browser -> server):
//   groupJoin {room, name, mode, sdpOffer}  the offer of the participant's own endpoint
//                                           (sendonly in sfu, sendrecv in mcu)
//   groupReceive {sender, sdpOffer}         sfu: a recvonly offer for `sender`'s media
//   groupCandidate {name, candidate}        name: own name, or the sender received
//   groupLeave
// Messages (server -> browser):
//   groupJoined {room, name, mode, sdpAnswer, participants}  (the others, in joining order)
//   groupReceiveAnswer {sender, sdpAnswer}
//   groupCandidate {name, candidate}
//   groupParticipantJoined {name}, groupParticipantLeft {name}
//   groupLeft

const { Rooms } = require('./rooms');

const MODES = ['sfu', 'mcu'];

function createGroupCall(ctx) {
  const rooms = new Rooms(ctx, { label: 'group-call', hubType: null, candidateId: 'groupCandidate' });

  async function join(session, { room: roomName, name, mode, sdpOffer }) {
    if (!MODES.includes(mode)) throw new Error(`Bad mode ${JSON.stringify(mode)}: sfu or mcu`);
    if (typeof sdpOffer !== 'string' || !sdpOffer) throw new Error('groupJoin without an SDP offer');
    if (session.group) leave(session);
    const participant = rooms.join(session, roomName, name, { mode });
    const { room } = participant;
    if (room.options.mode !== mode) {
      rooms.leave(participant);
      throw new Error(`Room ${roomName} is in ${room.options.mode.toUpperCase()} mode: join it in that mode`);
    }
    session.app = 'group-call';
    session.group = participant;
    session.send({ id: 'status', message: `joining room ${roomName} (${mode.toUpperCase()})` });
    const { pipeline } = await room.ready;
    if (participant.left) return;
    if (mode === 'mcu' && !room.composite) {
      // One Composite per room, made by the first MCU participant to get here.
      room.composite = room.composite || pipeline.create('Composite');
    }
    const endpoint = await pipeline.create('WebRtcEndpoint');
    if (participant.left) return ctx.releaseQuietly(endpoint, 'endpoint');
    await participant.adopt(name, endpoint);
    if (mode === 'mcu') {
      const composite = await room.composite;
      const port = await composite.createHubPort();
      if (participant.left) return ctx.releaseQuietly(port, 'hub port');
      participant.port = port;
      await endpoint.connect(port);
      await port.connect(endpoint);
    }
    const sdpAnswer = await endpoint.processOffer(sdpOffer);
    if (participant.left) return;
    // In one go, so that each pair of participants learns of each other exactly once.
    participant.ready = true;
    const others = rooms.others(participant).filter((p) => p.ready);
    session.send({ id: 'groupJoined', room: roomName, name, mode, sdpAnswer, participants: others.map((p) => p.name) });
    for (const other of others) other.send({ id: 'groupParticipantJoined', name });
    await endpoint.gatherCandidates();
  }

  // sfu: a new endpoint of the receiver, fed by the sender's own endpoint.
  async function receive(session, { sender, sdpOffer }) {
    const participant = session.group;
    if (!participant || participant.left) throw new Error('Join a room first');
    if (participant.room.options.mode !== 'sfu') throw new Error('groupReceive is for SFU rooms');
    const source = participant.room.participants.get(sender);
    const sourceEndpoint = source && source.endpoints.get(sender);
    if (!sourceEndpoint || source === participant) throw new Error(`No participant ${JSON.stringify(sender)} to receive`);
    if (participant.endpoints.has(sender)) participant.releaseEndpoint(sender);
    const { pipeline } = await participant.room.ready;
    const endpoint = await pipeline.create('WebRtcEndpoint');
    if (participant.left || source.left) return ctx.releaseQuietly(endpoint, 'endpoint');
    await participant.adopt(sender, endpoint);
    await sourceEndpoint.connect(endpoint);
    const sdpAnswer = await endpoint.processOffer(sdpOffer);
    if (participant.left || participant.endpoints.get(sender) !== endpoint) return;
    participant.send({ id: 'groupReceiveAnswer', sender, sdpAnswer });
    await endpoint.gatherCandidates();
  }

  function leave(session) {
    const participant = session.group;
    session.group = null;
    if (!participant || participant.left) return;
    const others = rooms.others(participant);
    rooms.leave(participant);
    for (const other of others) {
      // sfu: what the others received from it goes too.
      if (other.endpoints.has(participant.name)) other.releaseEndpoint(participant.name);
      if (other.ready) other.send({ id: 'groupParticipantLeft', name: participant.name });
    }
  }

  function candidate(session, { name, candidate: c }) {
    const participant = session.group;
    if (!participant || participant.left) return;
    participant.onBrowserCandidate(String(name), c);
  }

  return { join, receive, leave, candidate };
}

module.exports = { createGroupCall };
