'use strict';
// speaker-switch: a named room with a DispatcherOneToMany. Each participant has one
// WebRtcEndpoint connected both ways to a HubPort of the dispatcher; whoever is made the
// source (setSource) is what every participant receives, the source included; removeSource
// stops the forwarding. Any participant can pick the source.
//
// Messages (browser -> server):
//   speakerJoin {room, name, sdpOffer}   (sendrecv)
//   speakerCandidate {name, candidate}   (name: own name)
//   speakerSetSource {name}, speakerRemoveSource, speakerLeave
// Messages (server -> browser):
//   speakerJoined {room, name, sdpAnswer}
//   speakerCandidate {name, candidate}
//   speakerState {participants, source}  (to everyone in the room, after every change)

const { Rooms, checkName } = require('./rooms');

function createSpeakerSwitch(ctx) {
  const rooms = new Rooms(ctx, { label: 'speaker-switch', hubType: 'DispatcherOneToMany', candidateId: 'speakerCandidate' });

  function sendState(room) {
    const participants = [...room.participants.values()].filter((p) => p.port).map((p) => p.name);
    rooms.broadcast(room, { id: 'speakerState', participants, source: room.state.source || null });
  }

  async function join(session, { room: roomName, name, sdpOffer }) {
    if (typeof sdpOffer !== 'string' || !sdpOffer) throw new Error('speakerJoin without an SDP offer');
    if (session.speaker) leave(session);
    const participant = rooms.join(session, roomName, name);
    session.app = 'speaker-switch';
    session.speaker = participant;
    session.send({ id: 'status', message: `joining room ${roomName}` });
    const { pipeline, hub } = await participant.room.ready;
    if (participant.left) return;
    const endpoint = await pipeline.create('WebRtcEndpoint');
    if (participant.left) return ctx.releaseQuietly(endpoint, 'endpoint');
    await participant.adopt(name, endpoint);
    const port = await hub.createHubPort();
    if (participant.left) return ctx.releaseQuietly(port, 'hub port');
    await endpoint.connect(port);
    await port.connect(endpoint);
    const sdpAnswer = await endpoint.processOffer(sdpOffer);
    if (participant.left) return ctx.releaseQuietly(port, 'hub port');
    participant.port = port;
    session.send({ id: 'speakerJoined', room: roomName, name, sdpAnswer });
    sendState(participant.room);
    await endpoint.gatherCandidates();
  }

  function member(session) {
    const participant = session.speaker;
    if (!participant || participant.left) throw new Error('Join a room first');
    return participant;
  }

  // The room's source changes in the order the requests arrive.
  function switchSource(room, work) {
    room.state.switching = (room.state.switching || Promise.resolve()).then(work, work);
    return room.state.switching;
  }

  async function setSource(session, { name }) {
    const { room } = member(session);
    checkName('participant name', name);
    await switchSource(room, async () => {
      const source = room.participants.get(name);
      if (!source || !source.port) throw new Error(`No participant ${name} in room ${room.name}`);
      const { hub } = await room.ready;
      await ctx.invoke(hub, 'setSource', source.port);
      room.state.source = name;
      ctx.log(`speaker-switch: room ${room.name}: source ${name}`);
      sendState(room);
    });
  }

  async function removeSource(session) {
    const { room } = member(session);
    await switchSource(room, async () => {
      const { hub } = await room.ready;
      await ctx.invoke(hub, 'removeSource');
      room.state.source = null;
      ctx.log(`speaker-switch: room ${room.name}: no source`);
      sendState(room);
    });
  }

  function leave(session) {
    const participant = session.speaker;
    session.speaker = null;
    if (!participant || participant.left) return;
    const { room } = participant;
    // With its port released the source is gone: the others are told there is none.
    if (room.state.source === participant.name) room.state.source = null;
    rooms.leave(participant);
    sendState(room);
  }

  function candidate(session, { name, candidate: c }) {
    const participant = session.speaker;
    if (!participant || participant.left) return;
    participant.onBrowserCandidate(String(name), c);
  }

  return { join, setSource, removeSource, leave, candidate };
}

module.exports = { createSpeakerSwitch };
