'use strict';
// Pure functions over page snapshots (see browser.js pageSnapshot): is media from each peer
// still flowing, when did it start, what to print. No I/O here, so it is unit-tested with
// synthetic snapshots in harness.test.js.

/** The counter that proves media of `kind` is being consumed, per inbound-rtp entry. */
function progressValues(entry) {
  if (entry.kind === 'video') return [entry.framesDecoded || 0];
  // Audio: samples played out when Chromium pulls audio; bytes received in any case.
  return [entry.totalSamplesReceived || 0, entry.bytesReceived || 0];
}

/** peerId -> ssrc -> inbound entry, for one kind. Entries without an owner are skipped. */
function inboundByPeer(snapshot, kind) {
  const byPeer = new Map();
  const inbound = (snapshot && snapshot.stats && snapshot.stats.inbound) || [];
  for (const entry of inbound) {
    if (entry.kind !== kind || !entry.participantId) continue;
    if (!byPeer.has(entry.participantId)) byPeer.set(entry.participantId, new Map());
    byPeer.get(entry.participantId).set(String(entry.ssrc), entry);
  }
  return byPeer;
}

/**
 * Peers whose media of `kind` advanced between two snapshots of the same page: some SSRC
 * of theirs shows a larger counter in `current` than in `previous` (absent = 0).
 */
function risingPeers(previous, current, kind) {
  const before = inboundByPeer(previous, kind);
  const after = inboundByPeer(current, kind);
  const rising = new Set();
  for (const [peer, ssrcs] of after) {
    for (const [ssrc, entry] of ssrcs) {
      const old = before.get(peer) && before.get(peer).get(ssrc);
      const now = progressValues(entry);
      const then = old ? progressValues(old) : now.map(() => 0);
      if (now.some((value, i) => value > then[i])) rising.add(peer);
    }
  }
  return rising;
}

/** [{peer, kind}] of expected peers whose media did not advance between the snapshots. */
function missingMedia(previous, current, expectedPeers, kinds = ['video', 'audio']) {
  const missing = [];
  for (const kind of kinds) {
    const rising = risingPeers(previous, current, kind);
    for (const peer of expectedPeers) if (!rising.has(peer)) missing.push({ peer, kind });
  }
  return missing;
}

/** [{peer, kind: 'video'}] of expected peers from whom this snapshot has no decoded frame yet. */
function neverDecoded(snapshot, expectedPeers) {
  const byPeer = inboundByPeer(snapshot, 'video');
  return expectedPeers
    .filter((peer) => ![...((byPeer.get(peer) || new Map()).values())].some((e) => (e.framesDecoded || 0) > 0))
    .map((peer) => ({ peer, kind: 'video' }));
}

/** The last snapshot taken at or before `time` (snapshots are in time order), or null. */
function snapshotAt(snapshots, time) {
  let found = null;
  for (const snapshot of snapshots) {
    if (snapshot.now <= time) found = snapshot;
    else break;
  }
  return found;
}

/**
 * Splits [start, end] into windows of `windowMs` and checks that every expected peer's
 * media advanced inside each window. Returns the failing windows with what was missing.
 */
function checkWindows(snapshots, start, end, windowMs, expectedPeers, kinds = ['video', 'audio']) {
  const failures = [];
  for (let from = start; from + windowMs <= end + 1; from += windowMs) {
    const a = snapshotAt(snapshots, from);
    const b = snapshotAt(snapshots, from + windowMs);
    if (!a || !b || a === b) {
      failures.push({ from, to: from + windowMs, missing: [{ peer: '*', kind: 'no snapshot' }] });
      continue;
    }
    const missing = missingMedia(a, b, expectedPeers, kinds);
    if (missing.length > 0) failures.push({ from, to: from + windowMs, missing });
  }
  return failures;
}

/** Milliseconds from `since` to the first 'connected' connection state, or null. */
function timeToConnected(events, since) {
  const event = (events || []).find((e) => e.type === 'connectionstatechange' && e.state === 'connected');
  return event ? event.t - since : null;
}

/** peerId -> milliseconds from `since` to the first snapshot with a decoded frame from that peer. */
function timeToFirstFrame(snapshots, since) {
  const first = new Map();
  for (const snapshot of snapshots) {
    for (const [peer, ssrcs] of inboundByPeer(snapshot, 'video')) {
      if (first.has(peer)) continue;
      for (const entry of ssrcs.values()) {
        if ((entry.framesDecoded || 0) > 0) {
          first.set(peer, snapshot.now - since);
          break;
        }
      }
    }
  }
  return first;
}

/** Sums of a field over a snapshot's inbound entries of `kind` (all kinds when null). */
function sumInbound(snapshot, field, kind = null) {
  const inbound = (snapshot && snapshot.stats && snapshot.stats.inbound) || [];
  return inbound.filter((e) => kind === null || e.kind === kind).reduce((sum, e) => sum + (e[field] || 0), 0);
}

/**
 * Has `peer` gone from this page: the server said participant_left, its tile is gone and
 * no m-line of the current remote description still carries its msid with media.
 */
function peerGone(snapshot, peer) {
  const reasons = [];
  if (!snapshot.events.some((e) => e.type === 'participant_left' && e.id === peer)) reasons.push('no participant_left event');
  if (snapshot.tiles.includes(peer)) reasons.push('tile still shown');
  const live = snapshot.mlines.filter((m) => m.msid === peer && m.direction !== 'inactive');
  if (live.length > 0) reasons.push(`${live.length} m-line(s) still ${live.map((m) => `${m.mid}:${m.direction}`).join(',')}`);
  return { gone: reasons.length === 0, reasons };
}

/**
 * Milliseconds the browser's DTLS transport spent in 'connecting' before 'connected', from
 * the transport probe's events (browser.js transportProbe), or null when it never connected.
 */
function dtlsHandshakeTime(transportEvents) {
  const dtls = (transportEvents || []).filter((e) => e.type === 'dtls');
  const connected = dtls.find((e) => e.state === 'connected');
  if (!connected) return null;
  const connecting = dtls.find((e) => e.state === 'connecting' && e.t <= connected.t);
  return connecting ? connected.t - connecting.t : null;
}

/**
 * participant id -> handshake_ms from the server's per-session "DTLS connected" log lines
 * (span `session{participant=ID ...}`). The first completion per participant counts.
 */
function serverHandshakes(logText) {
  const result = new Map();
  for (const line of (logText || '').split('\n')) {
    if (!line.includes('DTLS connected')) continue;
    const participant = line.match(/participant=([^\s}]+)/);
    const handshake = line.match(/handshake_ms=(\d+)/);
    if (participant && handshake && !result.has(participant[1])) result.set(participant[1], Number(handshake[1]));
  }
  return result;
}

/**
 * Milliseconds between the first and the last "participant joined" line of `room` in the
 * server's log (each line starts with an RFC 3339 timestamp), or null with fewer than 2.
 */
function serverJoinSpread(logText, room) {
  const times = [];
  for (const line of (logText || '').split('\n')) {
    if (!line.includes('participant joined') || !line.includes(`room=${room}`)) continue;
    const t = Date.parse(line.split(/\s+/)[0]);
    if (Number.isFinite(t)) times.push(t);
  }
  return times.length < 2 ? null : Math.max(...times) - Math.min(...times);
}

/** Sum of the samples of one metric family (all label sets) in OpenMetrics text, or null. */
function metricValue(text, name) {
  if (!text) return null;
  let sum = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.split(' ').pop());
    if (Number.isFinite(value)) sum = (sum || 0) + value;
  }
  return sum;
}

/** Renders rows (arrays of strings) as an aligned text table. */
function formatTable(header, rows) {
  const widths = header.map((h, i) => Math.max(String(h).length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

module.exports = {
  inboundByPeer,
  risingPeers,
  missingMedia,
  neverDecoded,
  snapshotAt,
  checkWindows,
  timeToConnected,
  timeToFirstFrame,
  sumInbound,
  dtlsHandshakeTime,
  serverHandshakes,
  serverJoinSpread,
  metricValue,
  peerGone,
  formatTable,
};
