'use strict';
// Pure functions for the loadgen-room scenario (lib/loadroom-scenario.js): which remote
// participants a browser receives from, whether their RTP counters advance, whether the
// load generator's totals include the browsers' media, and the per-browser tables. No I/O:
// unit-tested with synthetic snapshots in loadgen-room.test.js.

const { snapshotAt, formatTable } = require('./analysis');

/** Counters summed over every SSRC of one (participant, kind); jitter is the largest. */
const SUMMED_FIELDS = [
  'packetsReceived',
  'packetsLost',
  'bytesReceived',
  'framesReceived',
  'framesDecoded',
  'keyFramesDecoded',
  'framesDropped',
  'pliCount',
  'nackCount',
  'totalSamplesReceived',
];

/**
 * peerId -> kind -> totals over the snapshot's inbound entries. After a renegotiation a
 * participant's track can arrive on a new SSRC: its counters add up under the same key.
 * Entries the page could not attribute to a participant are left out.
 */
function tracksByPeer(snapshot) {
  const byPeer = new Map();
  for (const entry of (snapshot && snapshot.inbound) || []) {
    if (!entry.participantId || (entry.kind !== 'audio' && entry.kind !== 'video')) continue;
    if (!byPeer.has(entry.participantId)) byPeer.set(entry.participantId, new Map());
    const kinds = byPeer.get(entry.participantId);
    if (!kinds.has(entry.kind)) {
      const totals = { ssrcs: [], jitter: 0 };
      for (const field of SUMMED_FIELDS) totals[field] = 0;
      kinds.set(entry.kind, totals);
    }
    const totals = kinds.get(entry.kind);
    totals.ssrcs.push(entry.ssrc);
    for (const field of SUMMED_FIELDS) totals[field] += Number(entry[field]) || 0;
    totals.jitter = Math.max(totals.jitter, Number(entry.jitter) || 0);
  }
  return byPeer;
}

/** The value of `field` for (peer, kind) in a snapshot, 0 when there is no such track. */
function counter(snapshot, peer, kind, field) {
  const track = tracksByPeer(snapshot).get(peer);
  return (track && track.get(kind) && track.get(kind)[field]) || 0;
}

/**
 * Maps display names to participant ids through the page's participant list
 * (snapshot.participants: [[id, name], ...]). Returns { ids: name -> id, missing: [names] }.
 */
function idsForNames(snapshot, names) {
  const byName = new Map();
  for (const [id, name] of (snapshot && snapshot.participants) || []) if (!byName.has(name)) byName.set(name, id);
  const ids = new Map();
  const missing = [];
  for (const name of names) {
    if (byName.has(name)) ids.set(name, byName.get(name));
    else missing.push(name);
  }
  return { ids, missing };
}

/** [{peer, kind}] of expected peers without a track of `kind` that has received a packet. */
function notReceiving(snapshot, peers, kinds = ['audio', 'video']) {
  const missing = [];
  for (const peer of peers) for (const kind of kinds) if (counter(snapshot, peer, kind, 'packetsReceived') <= 0) missing.push({ peer, kind });
  return missing;
}

/** [{peer, kind}] of expected peers whose `field` did not grow from `previous` to `current`. */
function notRising(previous, current, peers, kinds = ['audio', 'video'], field = 'packetsReceived') {
  const stalled = [];
  for (const peer of peers) {
    for (const kind of kinds) {
      if (counter(current, peer, kind, field) <= counter(previous, peer, kind, field)) stalled.push({ peer, kind });
    }
  }
  return stalled;
}

/**
 * Splits [start, start + count * windowMs] into `count` successive windows and returns the
 * ones in which some expected (peer, kind) did not advance `field`, as { index, from, to,
 * stalled }. A window without two distinct snapshots fails as a whole.
 */
function successiveWindows(snapshots, start, windowMs, count, peers, kinds = ['audio', 'video'], field = 'packetsReceived') {
  const failures = [];
  for (let index = 0; index < count; index += 1) {
    const from = start + index * windowMs;
    const to = from + windowMs;
    const a = snapshotAt(snapshots, from);
    const b = snapshotAt(snapshots, to);
    if (!a || !b || a === b) {
      failures.push({ index, from, to, stalled: [{ peer: '*', kind: 'no snapshot' }] });
      continue;
    }
    const stalled = notRising(a, b, peers, kinds, field);
    if (stalled.length > 0) failures.push({ index, from, to, stalled });
  }
  return failures;
}

/**
 * Did the load generator's clients receive the browsers' media? Its --json has totals only
 * (no per-publisher split), so this bounds what can have come from its own publishers:
 * each packet a loadgen publisher sent reaches at most the room's other loadgen clients,
 * so they received at most `packets_sent * (publishers + subscribers - 1)` of them
 * (RTX included on both sides). Everything received above
 * that bound came from the browsers. It is compared with what the browsers sent (their
 * outbound packetsSent, which every loadgen client should receive): the excess must be at
 * least `minShare` of it. The bound is loose by the loadgen packets sent before a
 * receiver subscribed, so the excess underestimates the browsers' share.
 */
function loadgenSawBrowsers({ json, publishers, subscribers, browserPacketsSent, minShare = 0.5 }) {
  const receivers = publishers + subscribers;
  const sent = Number(json && json.packets_sent) || 0;
  const received = Number(json && json.packets_received) || 0;
  const loadgenOriginMax = sent * Math.max(0, receivers - 1);
  const excess = received - loadgenOriginMax;
  const expectedFromBrowsers = browserPacketsSent * receivers;
  const ok = expectedFromBrowsers > 0 && excess >= minShare * expectedFromBrowsers;
  return { receivers, loadgenOriginMax, excess, expectedFromBrowsers, share: expectedFromBrowsers > 0 ? excess / expectedFromBrowsers : null, ok };
}

/** Sum of outbound packetsSent over a browser snapshot (audio + video). */
function packetsSent(snapshot) {
  return ((snapshot && snapshot.outbound) || []).reduce((sum, o) => sum + (Number(o.packetsSent) || 0), 0);
}

const dash = (value) => (value === null || value === undefined ? '-' : value);

/**
 * The per-browser report: a header line (selected pair, DTLS, participants seen) and one row
 * per remote track and per outbound stream. `nameOf(id)` gives display names. Jitter is
 * shown in milliseconds (getStats reports seconds).
 */
function browserTable(name, snapshot, nameOf = (id) => id) {
  if (!snapshot) return `${name}: no snapshot`;
  const transport = snapshot.transport || {};
  const path = snapshot.path ? `${snapshot.path.local} -> ${snapshot.path.remote} rtt ${dash(snapshot.path.rttMs)} ms` : '-';
  const peers = tracksByPeer(snapshot);
  const head =
    `${name} (${dash(snapshot.participantId)}): pc ${dash(snapshot.connectionState)}, pair ${path}, ` +
    `dtls ${dash(transport.dtlsState)} (${dash(transport.dtlsRole)}), ` +
    `remote participants ${(snapshot.participants || []).length} listed / ${peers.size} sending`;
  const header = ['remote', 'kind', 'ssrcs', 'packets', 'lost', 'jitter ms', 'bytes', 'frames rcvd', 'decoded', 'key', 'dropped', 'pli', 'nack'];
  const rows = [];
  const sorted = [...peers.entries()].sort(([a], [b]) => String(nameOf(a)).localeCompare(String(nameOf(b))));
  for (const [peer, kinds] of sorted) {
    for (const kind of ['audio', 'video']) {
      const t = kinds.get(kind);
      if (!t) continue;
      const video = kind === 'video';
      rows.push([
        `${nameOf(peer)} (${peer})`,
        kind,
        t.ssrcs.length,
        t.packetsReceived,
        t.packetsLost,
        (t.jitter * 1000).toFixed(1),
        t.bytesReceived,
        video ? t.framesReceived : '',
        video ? t.framesDecoded : '',
        video ? t.keyFramesDecoded : '',
        video ? t.framesDropped : '',
        video ? t.pliCount : '',
        video ? t.nackCount : '',
      ]);
    }
  }
  const outHeader = ['outbound', 'ssrc', 'packets sent', 'bytes sent', 'frames encoded', 'frames sent', 'nacks in', 'plis in', 'retransmitted', 'limited by'];
  const outRows = ((snapshot && snapshot.outbound) || []).map((o) => [
    o.kind,
    o.ssrc,
    dash(o.packetsSent),
    dash(o.bytesSent),
    o.kind === 'video' ? dash(o.framesEncoded) : '',
    o.kind === 'video' ? dash(o.framesSent) : '',
    dash(o.nackCount),
    o.kind === 'video' ? dash(o.pliCount) : '',
    dash(o.retransmittedPacketsSent),
    o.kind === 'video' ? dash(o.qualityLimitationReason) : '',
  ]);
  return [head, formatTable(header, rows), formatTable(outHeader, outRows)].join('\n');
}

module.exports = {
  tracksByPeer,
  counter,
  idsForNames,
  notReceiving,
  notRising,
  successiveWindows,
  loadgenSawBrowsers,
  packetsSent,
  browserTable,
};
