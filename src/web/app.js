// Sluice demo page: join a room with camera and microphone, see everyone else.
//
// Signalling (docs/signaling.md): one WebSocket at /ws, JSON messages with a `type`.
// The server always offers and this page always answers. On the first offer the
// page attaches its microphone and camera to the transceivers of mid "0" and "1".
// Every other m-line carries one track of another participant; its msid stream id
// is that participant's id, which is how tiles are keyed.
//
// Controls: Leave, mute microphone, camera off (both signalled with `mute`, so the others
// show a placeholder instead of a frozen frame), camera and microphone choice
// (replaceTrack, no renegotiation), Share screen, and a per-tile quality hint from getStats.
//
// Screen share: the page sends `publish {source: "screen"}`; the next offer names the mid
// the server receives the screen on in its `publish` list, and the page attaches the
// screen track to that transceiver. Stopping sends `unpublish`. Others' screens arrive
// as a stream of their own (msid stream id = the screen's track id): a tile of their own.
//
// Subscriptions: the server subscribes the page to every microphone and screen and to
// cameras up to its limit; the page then unsubscribes the camera of a tile scrolled out
// of view (a tile that keeps its audio stays, so it can come back) and subscribes it
// again when it is visible.
//
// Page options (query string): room, name, autojoin=1, token, video=0 to join without
// a camera, audio=0 without a microphone (both: a viewer that publishes nothing), and
// fake_screen=1 to share a canvas instead of asking getDisplayMedia (for tests on machines
// without a screen to capture), subscribe=all to keep every camera the server subscribes
// (tests that check media from everyone in a room larger than the window). A tile with no live video track shows the participant's
// initial, like camera off, rather than an empty or frozen picture.
//
// Reconnection: when the WebSocket closes unexpectedly, the server ends the session for a
// reason that is not final (shutting_down, media_failed, cluster_unavailable, ...), or the
// media connection fails, the page joins the same room again by itself, after 0.25 s then
// doubling up to 3 s (with jitter, so a room that lost its node does not come back all at
// once). It does not after Leave, nor after a final error (bad token, room full): retrying
// cannot help there. In a cluster the new WebSocket may reach another node; the room is
// placed anew if its node died. State `reconnecting` while waiting.
//
// For browser tests: window.sluice = { state, participantId, pc, events, stats() }.
'use strict';

(() => {
  const LOCAL_AUDIO_MID = '0';
  const LOCAL_VIDEO_MID = '1';
  const PING_INTERVAL_MS = 20000;
  const MAX_EVENTS = 2000;
  const RECONNECT_BASE_MS = 250;
  const RECONNECT_MAX_MS = 3000;
  /** Error codes after which joining again cannot succeed: no automatic reconnect. */
  const FINAL_CODES = new Set(['unauthorized', 'bad_request', 'room_full', 'too_many_rooms', 'message_too_large']);

  const $ = (id) => document.getElementById(id);
  const grid = $('grid');
  const statusEl = $('status');
  const errorEl = $('error');
  const form = $('join-form');
  const leaveButton = $('leave');
  const joinButton = $('join');
  const micButton = $('mute-mic');
  const cameraButton = $('camera');
  const shareButton = $('share-screen');
  const cameraSelect = $('camera-select');
  const micSelect = $('mic-select');
  const QUALITY_INTERVAL_MS = 2000;
  /**
   * The camera's simulcast encodings, as the server asks for them by RID (lowest first):
   * scale factor and bitrate cap. `?simulcast=0` sends one encoding even when asked.
   */
  const SIMULCAST = {
    q: { scaleResolutionDownBy: 4, maxBitrate: 100000 },
    h: { scaleResolutionDownBy: 2, maxBitrate: 400000 },
    f: { scaleResolutionDownBy: 1, maxBitrate: 1200000 },
  };
  /** Tile sizes are reported at most this often per tile. */
  const SIZE_REPORT_MS = 500;

  /** What a person should read for an error code or a bye reason (docs/signaling.md). */
  const REASONS = {
    bad_request: 'The server did not understand this page (bad request).',
    unauthorized: 'Not allowed to join this room (missing, invalid or expired token).',
    room_full: 'The room is full.',
    too_many_rooms: 'The server has no room for another call right now.',
    message_too_large: 'A message was too large for the server.',
    shutting_down: 'The server is shutting down.',
    internal: 'The server had an internal error.',
    cluster_unavailable: 'The service cannot place this call right now; retrying.',
    answer_timeout: 'This page did not answer the server in time.',
    connect_timeout: 'The media connection could not be established in time (network blocked?).',
    idle_timeout: 'The connection was idle too long before joining.',
    media_failed: 'The secure media connection failed.',
    disconnected: 'The media connection was lost.',
    room_moved: 'The call moved to another server; rejoining.',
  };
  const inWords = (code) => REASONS[code] || `Disconnected (${code}).`;

  const params = new URLSearchParams(location.search);

  const sluice = {
    state: 'idle',
    participantId: null,
    room: null,
    pc: null,
    events: [],
    /** id -> display name of everyone else in the room. */
    participants: new Map(),
    /** The room's dominant speaker as the server last named it (maybe us). */
    dominantSpeaker: null,
    /** track id -> { participantId, kind, source, muted } of everything others publish. */
    tracks: new Map(),
    /** Our screen share's track while sharing. */
    screenTrack: null,
    /** Automatic rejoins so far (reset once media connects). */
    reconnects: 0,
    stats,
    join,
    leave,
    shareScreen,
    stopScreenShare,
  };
  window.sluice = sluice;

  let ws = null;
  let localStream = null;
  let firstOfferDone = false;
  let pingTimer = null;
  /** The room, name and token of the call to return to; null after Leave. */
  let lastJoin = null;
  let reconnectTimer = null;
  let reconnectAttempt = 0;
  /** A final error was received: the session ends without reconnecting. */
  let finalError = false;
  // Offers are handled strictly one after another.
  let offerChain = Promise.resolve();
  /** participant id -> { el, video, stream } */
  const tiles = new Map();

  /** Dims a tile whose camera the server paused for us, saying why. */
  function applyPaused(tile, reason) {
    tile.el.classList.toggle('video-paused', Boolean(reason));
    if (reason) tile.el.dataset.pausedReason = reason;
    else delete tile.el.dataset.pausedReason;
  }
  /** MediaStreamTrack.id -> participant id (or a screen's stream id), for stats(). */
  const trackOwners = new Map();
  /** MediaStreamTrack.id -> microphone, camera or screen, for stats(). */
  const trackSources = new Map();

  function log(type, fields = {}) {
    sluice.events.push({ t: Date.now(), type, ...fields });
    if (sluice.events.length > MAX_EVENTS) sluice.events.splice(0, sluice.events.length - MAX_EVENTS);
  }

  function setState(state) {
    sluice.state = state;
    statusEl.textContent = sluice.participantId ? `${state} as ${sluice.participantId}` : state;
    const active = state === 'connecting' || state === 'joined';
    joinButton.disabled = active || state === 'reconnecting';
    leaveButton.disabled = !active && state !== 'reconnecting';
    micButton.disabled = !active;
    cameraButton.disabled = !active;
    shareButton.disabled = state !== 'joined';
    cameraSelect.disabled = !active || cameraSelect.options.length < 2;
    micSelect.disabled = !active || micSelect.options.length < 2;
    log('state', { state });
  }

  function showError(text) {
    errorEl.textContent = text;
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  // ---- tiles -------------------------------------------------------------

  function makeTile(key, label, stream, isSelf) {
    const el = document.createElement('div');
    el.className = isSelf ? 'tile self' : 'tile';
    el.dataset.participant = key;
    el.dataset.initial = (label || '?').trim().charAt(0).toUpperCase() || '?';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = isSelf; // never play our own microphone back
    video.srcObject = stream;
    const name = document.createElement('span');
    name.className = 'label';
    name.textContent = label; // textContent: names are user input
    const quality = document.createElement('span');
    quality.className = 'quality';
    el.append(video, name);
    if (!isSelf) el.append(quality);
    grid.append(el);
    const tile = { el, video, stream, name, quality, reported: null, reportTimer: null };
    showVideoOrPlaceholder(tile);
    play(tile);
    const screen = sluice.tracks.get(key);
    if (screen && screen.source === 'screen') el.classList.add('screen');
    else if (!isSelf) {
      watchSize(key, tile);
      watchVisibility(key, tile);
    }
    return tile;
  }

  /**
   * Subscribes to a participant's camera while its tile is in view, and unsubscribes it
   * while not, so the server sends (and offers m-lines for) what is on screen only. A tile
   * without audio would vanish with its camera and could not come back into view: its
   * camera is left subscribed.
   */
  function watchVisibility(id, tile) {
    if (typeof IntersectionObserver === 'undefined' || params.get('subscribe') === 'all') return;
    tile.visibility = new IntersectionObserver((entries) => {
      const visible = entries.some((e) => e.isIntersecting);
      const camera = cameraTrackOf(id);
      if (!camera) return;
      if (visible) {
        send({ type: 'subscribe', track_ids: [camera] });
        log('subscribe', { trackId: camera });
      } else if (tile.stream.getAudioTracks().length > 0) {
        send({ type: 'unsubscribe', track_ids: [camera] });
        log('unsubscribe', { trackId: camera });
      }
    });
    tile.visibility.observe(tile.el);
  }

  /** The id of participant `id`'s published camera track, if any. */
  function cameraTrackOf(id) {
    for (const [trackId, t] of sluice.tracks) if (t.participantId === id && t.source === 'camera') return trackId;
    return null;
  }

  /** What `id` (a participant's or a screen's stream id) is called on its tile. */
  function labelOf(id) {
    const track = sluice.tracks.get(id);
    if (track && track.source === 'screen') return `${nameOf(track.participantId)} (screen)`;
    return nameOf(id);
  }

  /** Records the tracks someone publishes (from joined, participant_joined, room_state). */
  function setTracks(participantId, tracks) {
    for (const [trackId, t] of [...sluice.tracks]) if (t.participantId === participantId) sluice.tracks.delete(trackId);
    for (const t of tracks || []) addTrack(participantId, t);
  }

  function addTrack(participantId, t) {
    if (!t || typeof t.id !== 'string') return;
    sluice.tracks.set(t.id, { participantId, kind: t.kind, source: t.source, muted: Boolean(t.muted) });
  }

  /**
   * Tells the server how large this tile shows the participant's camera (device pixels),
   * so it sends the smallest simulcast encoding that fills it.
   */
  function watchSize(id, tile) {
    if (typeof ResizeObserver === 'undefined') return;
    const report = () => {
      tile.reportTimer = null;
      const ratio = window.devicePixelRatio || 1;
      const hidden = document.hidden || !tile.el.isConnected;
      const width = hidden ? 0 : Math.round(tile.video.clientWidth * ratio);
      const height = hidden ? 0 : Math.round(tile.video.clientHeight * ratio);
      const key = `${width}x${height}`;
      if (tile.reported === key) return;
      tile.reported = key;
      send({ type: 'video_size', id, width, height });
      log('video_size', { participantId: id, width, height });
    };
    tile.reportSize = () => {
      if (!tile.reportTimer) tile.reportTimer = setTimeout(report, tile.reported ? SIZE_REPORT_MS : 0);
    };
    tile.observer = new ResizeObserver(tile.reportSize);
    tile.observer.observe(tile.video);
  }

  // A hidden page shows nothing: every tile reports 0 x 0, and its size again when shown.
  document.addEventListener('visibilitychange', () => {
    for (const tile of tiles.values()) if (tile.reportSize) tile.reportSize();
  });

  /** The placeholder while the tile's stream has no live video track (e.g. no camera). */
  function showVideoOrPlaceholder(tile) {
    const live = tile.stream.getVideoTracks().some((t) => t.readyState === 'live');
    tile.el.classList.toggle('no-video', !live);
  }

  function play(tile) {
    const attempt = tile.video.play();
    if (!attempt || !attempt.catch) return;
    attempt.catch(() => {
      // Autoplay with sound was refused: play muted and offer a button.
      tile.video.muted = true;
      tile.video.play().catch(() => {});
      if (tile.el.querySelector('.unmute') || tile.el.classList.contains('self')) return;
      const button = document.createElement('button');
      button.className = 'unmute';
      button.textContent = 'Unmute';
      button.onclick = () => {
        tile.video.muted = false;
        tile.video.play().catch(() => {});
        button.remove();
      };
      tile.el.append(button);
    });
  }

  function nameOf(id) {
    return sluice.participants.get(id) || id;
  }

  /** participant id -> whether the server paused its camera for our downlink. */
  const pausedVideo = new Map();

  /** participant id -> { audio, video } muted flags, applied to its tile when it appears. */
  const mutedState = new Map();

  function setMuted(id, kind, muted) {
    const state = mutedState.get(id) || { audio: false, video: false };
    state[kind] = muted;
    mutedState.set(id, state);
    const tile = tiles.get(id);
    if (tile) applyMuted(tile, state);
  }

  function applyMuted(tile, state) {
    // Camera off: a placeholder instead of the last decoded frame.
    tile.el.classList.toggle('camera-off', Boolean(state && state.video));
    tile.el.classList.toggle('mic-off', Boolean(state && state.audio));
  }

  function removeTile(id, reason) {
    const tile = tiles.get(id);
    if (!tile) return;
    tile.video.srcObject = null;
    if (tile.observer) tile.observer.disconnect();
    if (tile.visibility) tile.visibility.disconnect();
    if (tile.reportTimer) clearTimeout(tile.reportTimer);
    tile.el.remove();
    tiles.delete(id);
    log('tile_removed', { participantId: id, reason });
  }

  function onTrack(event) {
    const stream = event.streams && event.streams[0];
    if (!stream) return; // every m-line we receive on carries an msid
    const id = stream.id;
    const track = event.track;
    trackOwners.set(track.id, id);
    const screen = sluice.tracks.get(id);
    trackSources.set(track.id, screen && screen.source === 'screen' ? 'screen' : track.kind === 'audio' ? 'microphone' : 'camera');
    log('track', { participantId: id, kind: track.kind, trackId: track.id, mid: event.transceiver && event.transceiver.mid });

    let tile = tiles.get(id);
    if (tile && tile.stream !== stream) {
      removeTile(id, 'replaced');
      tile = null;
    }
    if (!tile) {
      tile = makeTile(id, labelOf(id), stream, false);
      tiles.set(id, tile);
      applyMuted(tile, mutedState.get(id));
      applyPaused(tile, pausedVideo.get(id));
      tile.el.classList.toggle('speaking', id === sluice.dominantSpeaker);
      // An m-line turned inactive removes its track from the stream; a tile with
      // nothing left to show goes away.
      stream.addEventListener('removetrack', () => {
        if (stream.getTracks().length === 0 && tiles.get(id) === tile) removeTile(id, 'tracks_removed');
        else showVideoOrPlaceholder(tile);
      });
    }
    showVideoOrPlaceholder(tile);
    track.addEventListener('ended', () => {
      const live = stream.getTracks().filter((t) => t.readyState === 'live');
      if (live.length === 0 && tiles.get(id) === tile) removeTile(id, 'tracks_ended');
      else showVideoOrPlaceholder(tile);
    });
  }

  // ---- peer connection -----------------------------------------------------

  function createPeerConnection() {
    // The server is ICE-lite with host candidates in its offer: no STUN/TURN needed.
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers: [] });
    pc.ontrack = onTrack;
    pc.onconnectionstatechange = () => {
      log('connectionstatechange', { state: pc.connectionState });
      if (pc.connectionState === 'failed') {
        showError('Media connection failed.');
        if (sluice.pc === pc) {
          teardown('closed');
          scheduleReconnect('media_failed');
        }
      }
      if (pc.connectionState === 'connected') reconnectAttempt = 0;
    };
    pc.oniceconnectionstatechange = () => log('iceconnectionstatechange', { state: pc.iceConnectionState });
    sluice.pc = pc;
    return pc;
  }

  function attachLocalTrack(pc, mid, track) {
    const transceiver = pc.getTransceivers().find((t) => t.mid === mid);
    if (!transceiver) return Promise.resolve();
    if (!track) {
      transceiver.direction = 'inactive';
      return Promise.resolve();
    }
    transceiver.direction = 'sendonly';
    if (localStream && transceiver.sender.setStreams) transceiver.sender.setStreams(localStream);
    return transceiver.sender.replaceTrack(track);
  }

  async function handleOffer(revision, sdp, publish) {
    log('offer', { revision });
    const pc = sluice.pc || createPeerConnection();
    await pc.setRemoteDescription({ type: 'offer', sdp });
    if (!firstOfferDone) {
      firstOfferDone = true;
      const audio = localStream ? localStream.getAudioTracks()[0] : null;
      const video = localStream ? localStream.getVideoTracks()[0] : null;
      await attachLocalTrack(pc, LOCAL_AUDIO_MID, audio);
      await attachLocalTrack(pc, LOCAL_VIDEO_MID, video);
    }
    await attachScreen(pc, publish || []);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    send({ type: 'answer', revision, sdp: pc.localDescription.sdp });
    log('answer', { revision });
    await configureSimulcast(pc);
  }

  /**
   * The server's offer asks for the camera as simulcast (a=simulcast:recv with RIDs); the
   * browser then sends one encoding per RID, which we scale and cap here.
   */
  async function configureSimulcast(pc) {
    const transceiver = pc.getTransceivers().find((t) => t.mid === LOCAL_VIDEO_MID);
    if (!transceiver || !transceiver.sender.track) return;
    const parameters = transceiver.sender.getParameters();
    const encodings = parameters.encodings || [];
    if (encodings.length < 2 || encodings.every((e) => e.scaleResolutionDownBy)) return;
    const off = params.get('simulcast') === '0';
    encodings.forEach((encoding, index) => {
      const settings = SIMULCAST[encoding.rid];
      if (!settings) return;
      Object.assign(encoding, settings);
      // simulcast off in the page: only the full encoding is sent
      if (off) encoding.active = index === encodings.length - 1;
    });
    try {
      await transceiver.sender.setParameters(parameters);
      log('simulcast', { rids: encodings.map((e) => e.rid), active: encodings.map((e) => e.active) });
    } catch (e) {
      log('simulcast_failed', { error: String(e) });
    }
  }

  // ---- screen share -------------------------------------------------------------

  /** The mid our screen is sent on (from an offer's `publish`), while it is. */
  let screenMid = null;

  /**
   * Puts the screen on the m-line the offer names for it; a screen m-line the offer no
   * longer names (sharing stopped) goes back to receiving, as it may carry someone
   * else's track later.
   */
  async function attachScreen(pc, publish) {
    const slot = publish.find((s) => s.source === 'screen');
    const mid = slot && sluice.screenTrack ? slot.mid : null;
    if (screenMid && screenMid !== mid) {
      const old = pc.getTransceivers().find((t) => t.mid === screenMid);
      if (old) {
        await old.sender.replaceTrack(null);
        old.direction = 'recvonly';
      }
      screenMid = null;
    }
    if (!mid) return;
    const transceiver = pc.getTransceivers().find((t) => t.mid === mid);
    if (!transceiver) return;
    transceiver.direction = 'sendonly';
    await transceiver.sender.replaceTrack(sluice.screenTrack);
    if (screenMid !== mid) log('screen_attached', { mid });
    screenMid = mid;
  }

  /** A moving canvas as a screen (fake_screen=1): same path as a captured screen. */
  function canvasScreen() {
    const canvas = document.createElement('canvas');
    canvas.width = 1280;
    canvas.height = 720;
    const context = canvas.getContext('2d');
    let frame = 0;
    const draw = () => {
      frame += 1;
      context.fillStyle = `hsl(${frame % 360}, 60%, 40%)`;
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.fillStyle = '#fff';
      context.font = '64px sans-serif';
      context.fillText(`screen ${frame}`, 80, 360);
    };
    draw();
    const stream = canvas.captureStream(15);
    const timer = setInterval(draw, 66);
    const [track] = stream.getVideoTracks();
    track.addEventListener('ended', () => clearInterval(timer));
    track.stopDrawing = () => clearInterval(timer);
    return track;
  }

  /** Starts sharing: asks for the screen (or a canvas), then for an m-line to send it on. */
  async function shareScreen() {
    if (sluice.screenTrack || sluice.state !== 'joined') return false;
    let track;
    try {
      if (params.get('fake_screen') === '1') track = canvasScreen();
      else {
        const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
        [track] = stream.getVideoTracks();
      }
    } catch (e) {
      log('getdisplaymedia_failed', { error: String(e) });
      showError(`Could not share the screen: ${e.name || e}`);
      return false;
    }
    if (!track) return false;
    if ('contentHint' in track) track.contentHint = 'detail';
    sluice.screenTrack = track;
    // the browser's own "Stop sharing" ends the track
    track.addEventListener('ended', () => stopScreenShare());
    setShareButton(true);
    send({ type: 'publish', source: 'screen' });
    log('screen_share', { sharing: true });
    return true;
  }

  /** Stops sharing: the server withdraws the track at once and recycles its m-line. */
  async function stopScreenShare() {
    const track = sluice.screenTrack;
    if (!track) return;
    sluice.screenTrack = null;
    if (track.stopDrawing) track.stopDrawing();
    track.stop();
    setShareButton(false);
    send({ type: 'unpublish', source: 'screen' });
    log('screen_share', { sharing: false });
    const pc = sluice.pc;
    if (pc && screenMid) offerChain = offerChain.then(() => attachScreen(pc, [])).catch(() => {});
  }

  function setShareButton(sharing) {
    shareButton.setAttribute('aria-pressed', String(sharing));
    shareButton.textContent = sharing ? 'Stop sharing' : 'Share screen';
  }

  // ---- signalling ----------------------------------------------------------

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      log('bad_message', {});
      return;
    }
    switch (message.type) {
      case 'joined':
        sluice.participantId = message.participant_id;
        sluice.room = message.room;
        for (const p of message.participants || []) {
          sluice.participants.set(p.id, p.name);
          setTracks(p.id, p.tracks);
        }
        setState('joined');
        showError('');
        fillDeviceLists();
        if (!qualityTimer) qualityTimer = setInterval(() => updateQuality().catch(() => {}), QUALITY_INTERVAL_MS);
        log('joined', { participantId: message.participant_id, room: message.room, participants: message.participants || [] });
        break;
      case 'offer': {
        const { revision, sdp, publish } = message;
        offerChain = offerChain
          .then(() => handleOffer(revision, sdp, publish))
          .catch((e) => {
            log('offer_failed', { revision, error: String(e) });
            showError(`Could not apply offer ${revision}: ${e}`);
          });
        break;
      }
      case 'participant_joined':
        sluice.participants.set(message.id, message.name);
        setTracks(message.id, message.tracks);
        setMuted(message.id, 'audio', Boolean(message.audio_muted));
        setMuted(message.id, 'video', Boolean(message.video_muted));
        log('participant_joined', { id: message.id, name: message.name });
        if (tiles.has(message.id)) tiles.get(message.id).name.textContent = message.name;
        break;
      case 'room_state': {
        // A full resync (this page fell behind the room's changes): believe it.
        const present = new Set();
        for (const p of message.participants || []) {
          present.add(p.id);
          sluice.participants.set(p.id, p.name);
          setTracks(p.id, p.tracks);
          setMuted(p.id, 'audio', Boolean(p.audio_muted));
          setMuted(p.id, 'video', Boolean(p.video_muted));
        }
        for (const id of [...sluice.participants.keys()]) {
          if (!present.has(id)) {
            sluice.participants.delete(id);
            setTracks(id, []);
            removeTile(id, 'left');
            removeTile(`${id}-screen`, 'left');
          }
        }
        log('room_state', { participants: [...present] });
        break;
      }
      case 'track_published':
        addTrack(message.participant_id, message.track);
        log('track_published', { id: message.participant_id, trackId: message.track && message.track.id });
        break;
      case 'track_unpublished':
        sluice.tracks.delete(message.track_id);
        log('track_unpublished', { id: message.participant_id, trackId: message.track_id });
        removeTile(message.track_id, 'unpublished');
        break;
      case 'participant_muted':
        setMuted(message.id, message.kind, Boolean(message.muted));
        log('participant_muted', { id: message.id, kind: message.kind, muted: Boolean(message.muted) });
        break;
      case 'video_paused': {
        // the server stopped this camera for us: our downlink cannot carry it now
        // (reason bandwidth), or its owner is not among the room's recent speakers
        // (reason last_n)
        const paused = Boolean(message.paused);
        pausedVideo.set(message.id, paused ? message.reason || 'bandwidth' : false);
        const tile = tiles.get(message.id);
        if (tile) applyPaused(tile, pausedVideo.get(message.id));
        log('video_paused', { id: message.id, paused, reason: message.reason });
        break;
      }
      case 'dominant_speaker':
        sluice.dominantSpeaker = message.id;
        for (const [key, tile] of tiles) {
          const id = key === 'self' ? sluice.participantId : key;
          tile.el.classList.toggle('speaking', id === message.id);
        }
        log('dominant_speaker', { id: message.id });
        break;
      case 'participant_left':
        sluice.participants.delete(message.id);
        log('participant_left', { id: message.id });
        for (const [trackId, t] of [...sluice.tracks]) {
          if (t.participantId !== message.id) continue;
          sluice.tracks.delete(trackId);
          removeTile(trackId, 'left');
        }
        removeTile(message.id, 'left');
        break;
      case 'error':
        log('error', { code: message.code, message: message.message });
        // a subscription the server could not make costs nothing visible: not an error
        // to show (the tile keeps its placeholder)
        if (message.code === 'subscription_limit' || message.code === 'unknown_track') break;
        if (FINAL_CODES.has(message.code)) finalError = true;
        showError(inWords(message.code));
        break;
      case 'bye':
        log('bye', { reason: message.reason });
        if (message.reason !== 'left' && !errorEl.textContent) showError(message.reason ? inWords(message.reason) : 'Disconnected.');
        teardown('left');
        if (message.reason !== 'left' && !FINAL_CODES.has(message.reason)) scheduleReconnect(message.reason || 'bye');
        break;
      case 'pong':
        break;
      default:
        log('unknown_message', { messageType: String(message.type) });
    }
  }

  /** Joins again after `why`, with exponential backoff, unless the user left or the
   * last error was final. */
  function scheduleReconnect(why) {
    if (!lastJoin || finalError || reconnectTimer) return;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** reconnectAttempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    reconnectAttempt += 1;
    log('reconnect_scheduled', { why, delay, attempt: reconnectAttempt });
    setState('reconnecting');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      if (!lastJoin || sluice.state !== 'reconnecting') return;
      sluice.reconnects += 1;
      join(lastJoin.room, lastJoin.name, lastJoin.token, true);
    }, delay);
  }

  function cancelReconnect() {
    if (reconnectTimer) clearTimeout(reconnectTimer);
    reconnectTimer = null;
  }

  async function join(room, name, token, automatic = false) {
    if (sluice.state === 'connecting' || sluice.state === 'joined') return;
    cancelReconnect();
    lastJoin = { room, name, token };
    finalError = false;
    if (!automatic) {
      reconnectAttempt = 0;
      sluice.reconnects = 0;
      sluice.events.length = 0;
    }
    showError('');
    sluice.participantId = null;
    firstOfferDone = false;
    offerChain = Promise.resolve();
    setState('connecting');

    try {
      // 720p when the camera has it: the full simulcast encoding, halved and quartered;
      // `?video=0` joins without a camera
      const video = params.get('video') === '0' ? false : { width: { ideal: 1280 }, height: { ideal: 720 } };
      const audio = params.get('audio') !== '0';
      // a viewer (`?audio=0&video=0`) opens no device and publishes nothing
      localStream = audio || video ? await navigator.mediaDevices.getUserMedia({ audio, video }) : null;
    } catch (e) {
      log('getusermedia_failed', { error: String(e) });
      // Try whatever is available; joining to watch only is still useful.
      localStream = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
      if (!localStream) localStream = await navigator.mediaDevices.getUserMedia({ video: true }).catch(() => null);
      showError('Camera or microphone unavailable: joining with what is available.');
    }
    if (localStream) {
      const self = makeTile('self', `${name} (you)`, localStream, true);
      tiles.set('self', self);
    }

    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.onopen = () => {
      log('ws_open', {});
      const message = { type: 'join', room, name, version: 1 };
      if (token) message.token = token;
      send(message);
      pingTimer = setInterval(() => send({ type: 'ping' }), PING_INTERVAL_MS);
    };
    ws.onmessage = onMessage;
    ws.onerror = () => log('ws_error', {});
    ws.onclose = (event) => {
      log('ws_close', { code: event.code, reason: event.reason });
      if (sluice.state === 'connecting' || sluice.state === 'joined') {
        if (!errorEl.textContent) {
          showError(sluice.state === 'connecting' && !sluice.participantId
            ? 'Could not reach the server.'
            : `Connection to the server closed (${event.code}).`);
        }
        teardown('closed');
        scheduleReconnect(`ws_close_${event.code}`);
      }
    };
  }

  function teardown(state) {
    if (pingTimer) clearInterval(pingTimer);
    pingTimer = null;
    if (ws) {
      ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
    }
    ws = null;
    // A closed RTCPeerConnection cannot be reused: the next Join starts a new one.
    if (sluice.pc) sluice.pc.close();
    sluice.pc = null;
    firstOfferDone = false;
    offerChain = Promise.resolve();
    if (localStream) for (const track of localStream.getTracks()) track.stop();
    localStream = null;
    for (const id of [...tiles.keys()]) removeTile(id, state);
    trackOwners.clear();
    trackSources.clear();
    sluice.tracks.clear();
    if (sluice.screenTrack) {
      if (sluice.screenTrack.stopDrawing) sluice.screenTrack.stopDrawing();
      sluice.screenTrack.stop();
    }
    sluice.screenTrack = null;
    screenMid = null;
    setShareButton(false);
    mutedState.clear();
    pausedVideo.clear();
    sluice.participants.clear();
    sluice.dominantSpeaker = null;
    if (qualityTimer) clearInterval(qualityTimer);
    qualityTimer = null;
    qualityHistory.clear();
    setLocalMuted('audio', false, false);
    setLocalMuted('video', false, false);
    setState(state);
  }

  // ---- local controls: mute, camera, devices ---------------------------------

  /** Which local kind is off: the track stays attached (no renegotiation), disabled. */
  const localMuted = { audio: false, video: false };

  function setLocalMuted(kind, muted, tell) {
    localMuted[kind] = muted;
    const tracks = localStream ? (kind === 'audio' ? localStream.getAudioTracks() : localStream.getVideoTracks()) : [];
    for (const track of tracks) track.enabled = !muted;
    const button = kind === 'audio' ? micButton : cameraButton;
    button.setAttribute('aria-pressed', String(muted));
    button.textContent = kind === 'audio' ? (muted ? 'Unmute mic' : 'Mute mic') : (muted ? 'Camera on' : 'Camera off');
    const self = tiles.get('self');
    if (self) self.el.classList.toggle(kind === 'audio' ? 'mic-off' : 'camera-off', muted);
    if (tell) {
      send({ type: 'mute', kind, muted });
      log('local_mute', { kind, muted });
    }
  }

  async function fillDeviceLists() {
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    const current = (kind) => {
      const track = localStream && (kind === 'audio' ? localStream.getAudioTracks()[0] : localStream.getVideoTracks()[0]);
      return track && track.getSettings ? track.getSettings().deviceId : null;
    };
    for (const [select, kind, deviceKind] of [[cameraSelect, 'video', 'videoinput'], [micSelect, 'audio', 'audioinput']]) {
      select.textContent = '';
      devices.filter((d) => d.kind === deviceKind).forEach((d, i) => {
        const option = document.createElement('option');
        option.value = d.deviceId;
        option.textContent = d.label || `${deviceKind === 'videoinput' ? 'camera' : 'microphone'} ${i + 1}`;
        option.selected = d.deviceId === current(kind);
        select.append(option);
      });
    }
    setState(sluice.state);
  }

  /** Switches the camera or microphone without renegotiating (replaceTrack). */
  async function switchDevice(kind, deviceId) {
    if (!localStream) return;
    let fresh;
    try {
      const constraints = kind === 'audio' ? { audio: { deviceId: { exact: deviceId } } } : { video: { deviceId: { exact: deviceId } } };
      fresh = await navigator.mediaDevices.getUserMedia(constraints);
    } catch (e) {
      showError(`Could not open that ${kind === 'audio' ? 'microphone' : 'camera'}: ${e.name || e}`);
      return;
    }
    const track = kind === 'audio' ? fresh.getAudioTracks()[0] : fresh.getVideoTracks()[0];
    track.enabled = !localMuted[kind];
    const old = kind === 'audio' ? localStream.getAudioTracks()[0] : localStream.getVideoTracks()[0];
    const mid = kind === 'audio' ? LOCAL_AUDIO_MID : LOCAL_VIDEO_MID;
    const transceiver = sluice.pc && sluice.pc.getTransceivers().find((t) => t.mid === mid);
    if (transceiver) await transceiver.sender.replaceTrack(track);
    if (old) {
      localStream.removeTrack(old);
      old.stop();
    }
    localStream.addTrack(track);
    log('device_switched', { kind });
  }

  // ---- connection quality per tile ------------------------------------------

  let qualityTimer = null;
  /** participant id -> { lost, received, at } of the previous sample. */
  const qualityHistory = new Map();

  /** good / fair / poor from the loss and jitter of a participant's inbound streams. */
  async function updateQuality() {
    const s = await stats();
    const now = Date.now();
    const per = new Map();
    for (const r of s.inbound) {
      if (!r.participantId) continue;
      const p = per.get(r.participantId) || { lost: 0, received: 0, jitter: 0 };
      p.lost += r.packetsLost || 0;
      p.received += r.packetsReceived || 0;
      p.jitter = Math.max(p.jitter, r.jitter || 0);
      per.set(r.participantId, p);
    }
    for (const [id, p] of per) {
      const tile = tiles.get(id);
      const before = qualityHistory.get(id);
      qualityHistory.set(id, { ...p, at: now });
      if (!tile || !before) continue;
      const received = p.received - before.received;
      const lost = Math.max(0, p.lost - before.lost);
      const loss = received + lost > 0 ? lost / (received + lost) : 0;
      const quality = received === 0 ? 'poor' : loss > 0.1 || p.jitter > 0.1 ? 'poor' : loss > 0.02 || p.jitter > 0.03 ? 'fair' : 'good';
      tile.el.dataset.quality = quality;
      tile.quality.textContent = quality;
      tile.quality.title = `loss ${(loss * 100).toFixed(1)} %, jitter ${Math.round(p.jitter * 1000)} ms`;
    }
  }

  function leave() {
    lastJoin = null;
    cancelReconnect();
    send({ type: 'leave' });
    log('leave', {});
    teardown('left');
  }

  // ---- stats for tests and curious users -----------------------------------

  async function stats() {
    const pc = sluice.pc;
    const result = { state: sluice.state, connectionState: pc ? pc.connectionState : 'none', inbound: [], outbound: [], transport: null };
    if (!pc) return result;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        result.inbound.push({
          kind: s.kind,
          mid: s.mid,
          ssrc: s.ssrc,
          trackIdentifier: s.trackIdentifier,
          participantId: trackOwners.get(s.trackIdentifier) || null,
          source: trackSources.get(s.trackIdentifier) || null,
          framesDecoded: s.framesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          bytesReceived: s.bytesReceived,
          packetsReceived: s.packetsReceived,
          packetsLost: s.packetsLost,
          jitter: s.jitter,
          totalSamplesReceived: s.totalSamplesReceived,
        });
      } else if (s.type === 'outbound-rtp') {
        result.outbound.push({
          kind: s.kind,
          mid: s.mid,
          ssrc: s.ssrc,
          rid: s.rid,
          frameHeight: s.frameHeight,
          active: s.active,
          bytesSent: s.bytesSent,
          packetsSent: s.packetsSent,
          framesEncoded: s.framesEncoded,
          framesSent: s.framesSent,
        });
      } else if (s.type === 'transport') {
        result.transport = {
          dtlsState: s.dtlsState,
          dtlsRole: s.dtlsRole,
          iceState: s.iceState,
          tlsVersion: s.tlsVersion,
          srtpCipher: s.srtpCipher,
          selectedCandidatePairId: s.selectedCandidatePairId,
        };
      }
    });
    return result;
  }

  // ---- page wiring ---------------------------------------------------------

  $('room').value = params.get('room') || '';
  $('name').value = params.get('name') || '';
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    join($('room').value.trim(), $('name').value.trim(), params.get('token'));
  });
  leaveButton.addEventListener('click', leave);
  micButton.addEventListener('click', () => setLocalMuted('audio', !localMuted.audio, true));
  cameraButton.addEventListener('click', () => setLocalMuted('video', !localMuted.video, true));
  shareButton.addEventListener('click', () => (sluice.screenTrack ? stopScreenShare() : shareScreen()));
  cameraSelect.addEventListener('change', () => switchDevice('video', cameraSelect.value));
  micSelect.addEventListener('change', () => switchDevice('audio', micSelect.value));
  window.addEventListener('pagehide', () => send({ type: 'leave' }));

  if (params.get('autojoin') === '1' && params.get('room') && params.get('name')) {
    join(params.get('room'), params.get('name'), params.get('token'));
  }
})();
