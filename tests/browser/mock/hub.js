'use strict';
// Runs in a headless Chromium page: a stand-in SFU made of RTCPeerConnections, speaking the
// Sluice signalling protocol (docs/signaling.md) through mock/server.js. It decodes and
// re-encodes (a browser cannot forward encoded frames), so it is slow but faithful enough
// to exercise the browser test harness end to end before the real server routes media.
(() => {
  const hubSocket = new WebSocket(`ws://${location.host}/hub`);
  /** conn -> participant */
  const byConn = new Map();
  const room = { name: null, participants: new Map() }; // id -> participant
  let nextId = 1;
  const log = [];
  window.hub = { log, room };

  const toConn = (conn, msg) => hubSocket.send(JSON.stringify({ type: 'send', conn, msg }));

  let audioContext = null;
  function toneTrack() {
    if (!audioContext) audioContext = new AudioContext();
    const oscillator = audioContext.createOscillator();
    oscillator.frequency.value = 300 + 100 * (nextId % 5);
    const destination = audioContext.createMediaStreamDestination();
    oscillator.connect(destination);
    oscillator.start();
    return destination.stream.getAudioTracks()[0];
  }

  function streamFor(owner, viewer) {
    if (!viewer.streams.has(owner.id)) viewer.streams.set(owner.id, new MediaStream());
    return viewer.streams.get(owner.id);
  }

  function munge(viewer, sdp) {
    // The remote sees each forwarded stream under its owner's participant id, and only
    // loopback candidates (traffic stays on 127.0.0.1).
    let out = sdp;
    for (const [ownerId, stream] of viewer.streams) out = out.split(`a=msid:${stream.id} `).join(`a=msid:${ownerId} `);
    return out
      .split('\r\n')
      .filter((line) => !line.startsWith('a=candidate:') || / 127\.0\.0\.1 \d+ typ host/.test(line))
      .join('\r\n');
  }

  async function negotiate(p) {
    if (p.closed) return;
    if (p.awaiting) {
      p.dirty = true;
      return;
    }
    p.awaiting = true;
    await p.pc.setLocalDescription(await p.pc.createOffer());
    if (p.pc.iceGatheringState !== 'complete') {
      await new Promise((resolve) => {
        p.pc.addEventListener('icegatheringstatechange', () => p.pc.iceGatheringState === 'complete' && resolve());
        setTimeout(resolve, 3000);
      });
    }
    p.revision += 1;
    toConn(p.conn, { type: 'offer', revision: p.revision, sdp: munge(p, p.pc.localDescription.sdp) });
  }

  function addForwarding(owner, viewer) {
    const stream = streamFor(owner, viewer);
    const pair = {};
    for (const kind of ['audio', 'video']) {
      pair[kind] = viewer.pc.addTransceiver(owner.tracks[kind] || kind, { direction: 'sendonly', streams: [stream] });
    }
    viewer.forwarding.set(owner.id, pair);
  }

  function join(conn, msg) {
    const id = `p${nextId++}`;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    const p = { id, conn, name: msg.name, pc, revision: 0, awaiting: false, dirty: false, closed: false, tracks: {}, streams: new Map(), forwarding: new Map() };
    byConn.set(conn, p);
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    // Chromium does not relay a received audio track into another connection, so each
    // participant's audio is a tone made here (what it sounds like does not matter).
    p.tracks.audio = toneTrack();
    pc.ontrack = (e) => {
      if (e.track.kind !== 'video') return;
      p.tracks[e.track.kind] = e.track;
      for (const viewer of room.participants.values()) {
        const pair = viewer.forwarding.get(id);
        if (pair) pair[e.track.kind].sender.replaceTrack(e.track);
      }
    };
    const others = [...room.participants.values()];
    room.participants.set(id, p);
    toConn(conn, { type: 'joined', version: 1, participant_id: id, room: msg.room, participants: others.map((o) => ({ id: o.id, name: o.name })) });
    for (const other of others) {
      addForwarding(other, p);
      addForwarding(p, other);
      toConn(other.conn, { type: 'participant_joined', id, name: p.name });
      negotiate(other);
    }
    negotiate(p);
  }

  function leave(p, bye) {
    if (p.closed) return;
    p.closed = true;
    room.participants.delete(p.id);
    byConn.delete(p.conn);
    p.pc.close();
    for (const viewer of room.participants.values()) {
      const pair = viewer.forwarding.get(p.id);
      viewer.forwarding.delete(p.id);
      viewer.streams.delete(p.id);
      if (pair) {
        for (const t of [pair.audio, pair.video]) {
          t.sender.replaceTrack(null);
          t.direction = 'inactive';
        }
      }
      toConn(viewer.conn, { type: 'participant_left', id: p.id });
      negotiate(viewer);
    }
    if (bye) {
      toConn(p.conn, { type: 'bye', reason: 'left' });
      hubSocket.send(JSON.stringify({ type: 'close', conn: p.conn }));
    }
  }

  async function onParticipantMessage(conn, msg) {
    const p = byConn.get(conn);
    log.push({ t: Date.now(), conn, type: msg.type });
    if (msg.type === 'join' && !p) return join(conn, msg);
    if (!p) return undefined;
    if (msg.type === 'answer') {
      await p.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      p.awaiting = false;
      if (p.dirty) {
        p.dirty = false;
        negotiate(p);
      }
    } else if (msg.type === 'leave') leave(p, true);
    else if (msg.type === 'ping') toConn(conn, { type: 'pong' });
    return undefined;
  }

  // Messages are handled strictly in order.
  let chain = Promise.resolve();
  hubSocket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    chain = chain
      .then(() => {
        if (m.type === 'message') return onParticipantMessage(m.conn, m.msg);
        if (m.type === 'disconnect' && byConn.has(m.conn)) leave(byConn.get(m.conn), false);
        return undefined;
      })
      .catch((e) => log.push({ t: Date.now(), error: String(e) }));
  };
})();
