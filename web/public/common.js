'use strict';
// Shared browser code of the Fluo demo pages: status/error display, the signalling
// socket, and a thin wrapper around RTCPeerConnection.
//
// For tests and curious humans the pages also record, on window:
//   fluoTimings      { click, offerSent, answer, iceConnected, connected, 'firstFrame:<videoId>' }
//                    (performance.now() milliseconds, first occurrence of each)
//   fluoRemoteTracks [{ kind, id, streamIds }] in the order 'track' events arrived
//   fluoPeers        every RTCPeerConnection created by the page
//   fluoErrors       every error text shown in #error

(function () {
  const $ = (id) => document.getElementById(id);

  window.fluoTimings = {};
  window.fluoRemoteTracks = [];
  window.fluoPeers = [];
  window.fluoErrors = [];

  function mark(name) {
    if (window.fluoTimings[name] === undefined) window.fluoTimings[name] = performance.now();
  }

  function resetTimings() {
    window.fluoTimings = {};
    window.fluoRemoteTracks = [];
  }

  function setStatus(text) {
    const el = $('status');
    if (el) el.textContent = text;
    console.log('[status]', text);
  }

  function showError(text) {
    window.fluoErrors.push(text);
    const el = $('error');
    if (el) el.textContent = text;
    console.error('[error]', text);
  }

  function clearError() {
    const el = $('error');
    if (el) el.textContent = '';
  }

  // Open the signalling socket at /ws; `handlers` maps message ids to functions.
  // Resolves once open. Unknown ids and socket problems end up in #error.
  function openSignalling(handlers) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    let closedReported = false;
    const send = (message) => {
      if (ws.readyState !== WebSocket.OPEN) {
        if (!closedReported) showError(`Signalling socket is not open (state ${ws.readyState}); reload the page`);
        closedReported = true;
        return;
      }
      ws.send(JSON.stringify(message));
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        showError(`Bad message from the application server: ${event.data}`);
        return;
      }
      if (message.id === 'status') {
        setStatus(message.message);
        return;
      }
      const handler = handlers[message.id];
      if (!handler) {
        showError(`Unexpected message from the application server: ${event.data}`);
        return;
      }
      try {
        const r = handler(message);
        if (r && typeof r.catch === 'function') r.catch((e) => showError(String(e && e.message ? e.message : e)));
      } catch (e) {
        showError(String(e && e.message ? e.message : e));
      }
    };
    ws.onclose = () => setStatus('signalling socket closed; reload the page');
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve({ ws, send });
      ws.onerror = () => {
        showError('Could not open the signalling socket to the application server');
        reject(new Error('signalling socket error'));
      };
    });
  }

  async function getCamera() {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    } catch (e) {
      throw new Error(`Camera/microphone not available: ${e.name}: ${e.message}`);
    }
  }

  function attach(video, stream) {
    video.srcObject = stream;
    const p = video.play();
    if (p && typeof p.catch === 'function') {
      p.catch((e) => {
        if (e && e.name === 'NotAllowedError' && !video.muted) {
          // Autoplay with sound needs a user gesture: play muted instead.
          video.muted = true;
          video.play().catch((e2) => showError(`Cannot play video #${video.id}: ${e2.message}`));
        } else if (e && e.name !== 'AbortError') {
          showError(`Cannot play video #${video.id}: ${e.message}`);
        }
      });
    }
  }

  function detach(video) {
    if (!video) return;
    video.pause();
    video.srcObject = null;
  }

  // Record when the first frame of `video` is decoded and presented.
  function watchFirstFrame(video) {
    const name = `firstFrame:${video.id}`;
    const done = () => {
      mark(name);
      setStatus(`playing (first frame after ${Math.round(window.fluoTimings[name] - (window.fluoTimings.click || 0))} ms)`);
    };
    if (typeof video.requestVideoFrameCallback === 'function') {
      video.requestVideoFrameCallback(done);
    } else {
      video.addEventListener('loadeddata', done, { once: true });
    }
  }

  // A peer connection to a media server endpoint.
  //   direction:   'sendrecv' | 'sendonly' | 'recvonly'
  //   localStream: camera stream (not for recvonly)
  //   remoteVideo: <video> for the remote stream (not for sendonly)
  //   sendCandidate(candidateInit): forwards a local ICE candidate to the server
  class Peer {
    constructor({ direction, localStream, remoteVideo, sendCandidate }) {
      this.pc = new RTCPeerConnection({ iceServers: [] });
      window.fluoPeers.push(this.pc);
      this.remoteCandidates = [];
      this.remoteVideo = remoteVideo || null;
      const pc = this.pc;

      if (direction === 'recvonly') {
        pc.addTransceiver('audio', { direction: 'recvonly' });
        pc.addTransceiver('video', { direction: 'recvonly' });
      } else {
        for (const track of localStream.getTracks()) {
          pc.addTransceiver(track, { direction, streams: [localStream] });
        }
      }

      pc.onicecandidate = (event) => {
        if (event.candidate && event.candidate.candidate) sendCandidate(event.candidate.toJSON());
      };
      pc.oniceconnectionstatechange = () => {
        const state = pc.iceConnectionState;
        if (state === 'connected' || state === 'completed') mark('iceConnected');
        if (state === 'failed') showError('ICE failed: no connectivity with the media server');
      };
      pc.onconnectionstatechange = () => {
        const state = pc.connectionState;
        setStatus(`peer connection ${state}`);
        if (state === 'connected') mark('connected');
        if (state === 'failed') showError('Peer connection failed (ICE or DTLS)');
      };
      pc.ontrack = (event) => {
        window.fluoRemoteTracks.push({
          kind: event.track.kind,
          id: event.track.id,
          streamIds: event.streams.map((s) => s.id),
        });
        // Like kurento-utils (getRemoteStreams()[0]), show the first remote stream:
        // a media server must put audio and video in one MediaStream.
        if (this.remoteVideo && !this.remoteVideo.srcObject) {
          const stream = event.streams[0] || new MediaStream([event.track]);
          attach(this.remoteVideo, stream);
          watchFirstFrame(this.remoteVideo);
        }
      };
    }

    async createOffer() {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      return this.pc.localDescription.sdp;
    }

    async processAnswer(sdpAnswer) {
      mark('answer');
      await this.pc.setRemoteDescription({ type: 'answer', sdp: sdpAnswer });
      const queued = this.remoteCandidates.splice(0);
      for (const c of queued) await this.addRemoteCandidate(c);
    }

    // A candidate from the server; queued until the answer is applied.
    async addRemoteCandidate(candidate) {
      if (!this.pc.remoteDescription) {
        this.remoteCandidates.push(candidate);
        return;
      }
      try {
        await this.pc.addIceCandidate(candidate);
      } catch (e) {
        showError(`addIceCandidate(${candidate.candidate}) failed: ${e.message}`);
      }
    }

    close() {
      this.pc.close();
      if (this.remoteVideo) detach(this.remoteVideo);
    }
  }

  function stopStream(stream) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
  }

  function param(name) {
    return new URLSearchParams(location.search).get(name);
  }

  window.Fluo = {
    $,
    mark,
    resetTimings,
    setStatus,
    showError,
    clearError,
    openSignalling,
    getCamera,
    attach,
    detach,
    Peer,
    stopStream,
    param,
  };
})();
