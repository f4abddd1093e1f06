'use strict';
// Chromium participants in a room that the load generator fills: the server starts, the
// browsers are launched (blank), sluice-loadgen fills room PREFIX-0 with P publishers and S
// subscribers, and once the server counts them connected every browser opens the demo page
// in that room. Each browser's statistics are polled once a second; the checks are that
// every browser is connected, lists and receives RTP from every loadgen publisher and every
// other browser with counters advancing over two successive windows, and that the load
// generator's final --json shows the browsers' media received without decrypt failures.
// Returns a result object (never throws for a failed check) and always cleans up.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const cleanup = require('./cleanup');
const { startServer, pickMetrics } = require('./server');
const { launchParticipant } = require('./browser');
const { startLoadgen } = require('./loadgen');
const analysis = require('./analysis');
const room = require('./loadroom');

const RESULTS_DIR = path.resolve(__dirname, '..', 'results');

const DEFAULTS = {
  browsers: 2,
  publishers: 6,
  subscribers: 1,
  /** sluice-loadgen --duration-s: must outlast launch + join + the polling phase. */
  durationS: 30,
  /** Length of the polled phase; split into two windows that must both show progress. */
  pollS: 15,
};

const TIMINGS = {
  /** The server must count every loadgen participant connected this soon after it started. */
  loadgenConnectDeadlineMs: 20000,
  /** Every browser must receive from every publisher this soon after the pages opened. */
  mediaDeadlineMs: 20000,
  pollIntervalMs: 1000,
  snapshotTimeoutMs: 5000,
  /** The load generator may take this long beyond --duration-s to leave and print its JSON. */
  loadgenExitGraceMs: 20000,
  metricsPollIntervalMs: 250,
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ScenarioFailure extends Error {}

/**
 * Runs in the page (self-contained: playwright serialises it): the page's own stats()
 * (which attributes inbound tracks to participants) plus the getStats fields it leaves out
 * (frames received/dropped, keyframes, PLI/NACK counts, outbound feedback) and the
 * selected candidate pair.
 */
async function roomSnapshot() {
  const s = window.sluice;
  if (!s) return { missing: true };
  const base = await s.stats();
  const snap = {
    now: Date.now(),
    state: s.state,
    participantId: s.participantId,
    participants: [...s.participants.entries()],
    connectionState: base.connectionState,
    transport: base.transport,
    path: null,
    inbound: base.inbound,
    outbound: base.outbound,
    error: (document.getElementById('error') || {}).textContent || '',
    lastEvents: s.events.slice(-10),
  };
  const pc = s.pc;
  if (!pc) return snap;
  const report = await pc.getStats();
  const inExtra = new Map();
  const outExtra = new Map();
  let pairId = null;
  report.forEach((r) => {
    if (r.type === 'inbound-rtp') {
      inExtra.set(String(r.ssrc), {
        framesReceived: r.framesReceived,
        keyFramesDecoded: r.keyFramesDecoded,
        framesDropped: r.framesDropped,
        pliCount: r.pliCount,
        nackCount: r.nackCount,
        freezeCount: r.freezeCount,
        decoderImplementation: r.decoderImplementation,
      });
    } else if (r.type === 'outbound-rtp') {
      outExtra.set(String(r.ssrc), {
        nackCount: r.nackCount,
        pliCount: r.pliCount,
        retransmittedPacketsSent: r.retransmittedPacketsSent,
        qualityLimitationReason: r.qualityLimitationReason,
        targetBitrate: r.targetBitrate,
      });
    } else if (r.type === 'transport') pairId = r.selectedCandidatePairId;
  });
  for (const entry of snap.inbound) Object.assign(entry, inExtra.get(String(entry.ssrc)) || {});
  for (const entry of snap.outbound) Object.assign(entry, outExtra.get(String(entry.ssrc)) || {});
  const pair = pairId && report.get(pairId);
  if (pair) {
    const local = report.get(pair.localCandidateId) || {};
    const remote = report.get(pair.remoteCandidateId) || {};
    snap.path = {
      local: `${local.address || local.ip}:${local.port}`,
      remote: `${remote.address || remote.ip}:${remote.port}`,
      rttMs: pair.currentRoundTripTime === undefined ? null : Math.round(pair.currentRoundTripTime * 1000),
    };
  }
  return snap;
}

/** Options override DEFAULTS; `log` prints progress lines. Returns { ok, failures, tables, summary, resultsDir }. */
async function runLoadgenRoom(options = {}) {
  const cfg = { ...DEFAULTS, ...options };
  const { browsers: browserCount, publishers, subscribers, durationS, pollS } = cfg;
  const label = options.label || 'loadgen-room';
  const log = options.log || ((line) => process.stdout.write(`${line}\n`));
  const startedAt = Date.now();
  const say = (line) => log(`[${label} ${((Date.now() - startedAt) / 1000).toFixed(1)}s] ${line}`);
  const roomPrefix = `lgroom-${crypto.randomBytes(3).toString('hex')}`;
  const loadgenNames = [];
  for (let i = 0; i < publishers; i += 1) loadgenNames.push(`pub-0-${i}`);
  const subscriberNames = [];
  for (let i = publishers; i < publishers + subscribers; i += 1) subscriberNames.push(`sub-0-${i}`);

  const state = { server: null, loadgen: null, loadgenResult: null, peers: [], failures: [], phases: {}, roomName: `${roomPrefix}-0` };
  const fail = (message) => {
    state.failures.push(message);
    throw new ScenarioFailure(message);
  };

  const snapshot = async (peer) => {
    try {
      const snap = await cleanup.withTimeout(peer.browser.page.evaluate(roomSnapshot), TIMINGS.snapshotTimeoutMs, `snapshot of ${peer.name}`);
      if (snap && !snap.missing) {
        peer.snapshots.push(snap);
        peer.latest = snap;
      }
      return snap;
    } catch (error) {
      return { harnessError: error.message };
    }
  };
  const pollAll = async () => {
    const snaps = await Promise.all(state.peers.map(snapshot));
    const problems = [];
    snaps.forEach((snap, i) => {
      const name = state.peers[i].name;
      if (!snap || snap.missing) problems.push(`${name}: window.sluice missing`);
      else if (snap.harnessError) problems.push(`${name}: ${snap.harnessError}`);
      else if (snap.state === 'closed' || snap.state === 'left' || snap.state === 'reconnecting') problems.push(`${name}: page state '${snap.state}' (${JSON.stringify(snap.error)})`);
      else if (snap.connectionState === 'failed') problems.push(`${name}: RTCPeerConnection failed`);
    });
    if (problems.length > 0) fail(problems.join('; '));
    if (state.server.exitInfo) fail(`server exited: ${JSON.stringify(state.server.exitInfo)}`);
    return snaps;
  };
  /** Names each browser must receive from: every loadgen publisher and the other browsers. */
  const expectedNames = (peer) => [...loadgenNames, ...state.peers.filter((p) => p !== peer).map((p) => p.name)];
  const browserNames = () => state.peers.map((p) => p.name);

  try {
    state.server = await startServer({});
    say(`server pid ${state.server.pid} on ${state.server.url}, media 127.0.0.1:${state.server.mediaPort}`);

    for (let i = 0; i < browserCount; i += 1) {
      const name = `chrome-${i}`;
      const launchStart = Date.now();
      let browser;
      try {
        browser = await launchParticipant(name);
      } catch (error) {
        // Chromium occasionally dies during start-up on a loaded machine: one retry.
        say(`launching ${name} failed (${error.message.split('\n')[0]}); retrying once`);
        browser = await launchParticipant(name);
      }
      state.peers.push({ name, browser, snapshots: [], latest: null });
      say(`launched ${name} in ${Date.now() - launchStart} ms`);
    }

    // Fill the room, then wait until the server counts every loadgen participant connected.
    const loadgenStart = Date.now();
    state.loadgen = startLoadgen({
      wsUrl: `${state.server.url.replace(/^http/, 'ws')}/ws`,
      roomPrefix,
      publishers,
      subscribers,
      durationS,
    });
    say(`loadgen pid ${state.loadgen.pid}: ${publishers} publishers + ${subscribers} subscribers in ${state.roomName} for ${durationS} s`);
    const wanted = publishers + subscribers;
    let counts = null;
    for (;;) {
      if (!state.loadgen.running()) {
        const r = await state.loadgen.exited;
        fail(`loadgen exited before its participants connected (code ${r.code}): ${r.stderr.slice(-2000)}${r.stdout.slice(-2000)}`);
      }
      const metrics = await state.server.metrics();
      counts = {
        participants: analysis.metricValue(metrics, 'sluice_participants'),
        handshakes: analysis.metricValue(metrics, 'sluice_dtls_handshakes_completed_total'),
      };
      if (counts.participants >= wanted && counts.handshakes >= wanted) break;
      if (Date.now() - loadgenStart > TIMINGS.loadgenConnectDeadlineMs) {
        fail(`server counts ${counts.participants} participants / ${counts.handshakes} DTLS handshakes completed, want ${wanted}, ${TIMINGS.loadgenConnectDeadlineMs} ms after the loadgen started`);
      }
      await sleep(TIMINGS.metricsPollIntervalMs);
    }
    state.phases.loadgenConnectedMs = Date.now() - loadgenStart;
    say(`server counts ${counts.participants} participants, ${counts.handshakes} DTLS handshakes after ${state.phases.loadgenConnectedMs} ms`);

    // Every browser joins the loadgen's room at (nearly) the same moment.
    const pageUrl = (peer) => `${state.server.url}/?room=${encodeURIComponent(state.roomName)}&name=${encodeURIComponent(peer.name)}&autojoin=1&subscribe=all`;
    await Promise.all(state.peers.map((peer) => peer.browser.open(pageUrl(peer))));
    const openedAt = Math.min(...state.peers.map((p) => p.browser.openedAt));
    say(`${browserCount} pages open`);

    // Phase 1: connected, listing and receiving RTP from everyone expected.
    let lastProblems = [];
    for (;;) {
      const snaps = await pollAll();
      lastProblems = [];
      snaps.forEach((snap, i) => {
        const peer = state.peers[i];
        if (snap.connectionState !== 'connected') lastProblems.push(`${peer.name}: pc ${snap.connectionState}`);
        if (!snap.transport || snap.transport.dtlsState !== 'connected') lastProblems.push(`${peer.name}: dtls ${snap.transport && snap.transport.dtlsState}`);
        const { ids, missing } = room.idsForNames(snap, expectedNames(peer));
        if (missing.length) lastProblems.push(`${peer.name}: not listed ${missing.join(',')}`);
        const silent = room.notReceiving(snap, [...ids.values()]);
        if (silent.length) lastProblems.push(`${peer.name}: nothing from ${silent.map((m) => `${nameIn(snap, m.peer)} ${m.kind}`).join(', ')}`);
      });
      if (lastProblems.length === 0) break;
      if (Date.now() - openedAt > TIMINGS.mediaDeadlineMs) fail(`not every browser receives from everyone ${TIMINGS.mediaDeadlineMs} ms after the pages opened: ${lastProblems.join('; ')}`);
      await sleep(TIMINGS.pollIntervalMs);
    }
    state.phases.mediaUpMs = Date.now() - openedAt;
    say(`every browser receives RTP from ${publishers} loadgen publishers and ${browserCount - 1} other browser(s) after ${state.phases.mediaUpMs} ms`);

    // Phase 2: poll for pollS; two successive windows must each show every counter rising.
    const pollStart = Date.now();
    const pollEnd = pollStart + pollS * 1000;
    while (Date.now() < pollEnd + TIMINGS.pollIntervalMs / 2) {
      await pollAll();
      await sleep(Math.min(TIMINGS.pollIntervalMs, Math.max(0, pollEnd + TIMINGS.pollIntervalMs - Date.now())));
    }
    const windowMs = (pollS * 1000) / 2;
    const problems = [];
    for (const peer of state.peers) {
      const { ids } = room.idsForNames(peer.latest, expectedNames(peer));
      const everyone = [...ids.values()];
      for (const w of room.successiveWindows(peer.snapshots, pollStart, windowMs, 2, everyone)) {
        problems.push(`${peer.name} window ${w.index + 1}: ${w.stalled.map((m) => `${nameIn(peer.latest, m.peer)} ${m.kind}`).join(', ')} not rising`);
      }
      // Real VP8 between browsers must decode (loadgen's synthetic video is only reported).
      const browserIds = state.peers.filter((p) => p !== peer).map((p) => ids.get(p.name));
      for (const w of room.successiveWindows(peer.snapshots, pollStart, pollS * 1000, 1, browserIds, ['video'], 'framesDecoded')) {
        problems.push(`${peer.name}: no video frame decoded from ${w.stalled.map((m) => nameIn(peer.latest, m.peer)).join(', ')} during the poll`);
      }
    }
    if (!state.loadgen.running()) problems.push(`the loadgen ended before the polling did: raise LOADGEN_DURATION_S (now ${durationS})`);
    if (problems.length) fail(`media did not keep flowing over two ${windowMs} ms windows: ${problems.join('; ')}`);
    say(`RTP from everyone advanced in both ${windowMs} ms windows for every browser`);

    // Phase 3: the loadgen's own verdict, once it has run its duration and left.
    const deadline = loadgenStart + durationS * 1000 + TIMINGS.loadgenExitGraceMs;
    const timeout = Math.max(1000, deadline - Date.now());
    state.loadgenResult = await cleanup.withTimeout(state.loadgen.exited, timeout, 'loadgen exit').catch(async (error) => {
      await state.loadgen.stop();
      fail(`${error.message}`);
    });
    const r = state.loadgenResult;
    const json = r.json;
    if (!json) fail(`loadgen printed no JSON summary (code ${r.code}); stderr: ${r.stderr.slice(-2000)}`);
    const checks = [];
    if (r.code !== 0) checks.push(`loadgen exit code ${r.code} (a participant failed)`);
    if (json.handshakes_done !== wanted || json.failed !== 0) checks.push(`loadgen handshakes_done ${json.handshakes_done}/${wanted}, failed ${json.failed}, join_errors ${JSON.stringify(json.join_errors)}`);
    if (json.decrypt_failures !== 0) {
      // webrtc-srtp reports a replayed packet (same SSRC and sequence number twice) like an
      // authentication failure, and the loadgen counts both as decrypt failures.
      checks.push(`loadgen decrypt_failures ${json.decrypt_failures} (SRTP authentication failures or replays, e.g. a packet forwarded twice)`);
    }
    const browserSent = state.peers.reduce((sum, p) => sum + room.packetsSent(p.latest), 0);
    state.sawBrowsers = room.loadgenSawBrowsers({ json, publishers, subscribers, browserPacketsSent: browserSent });
    const seen = state.sawBrowsers;
    say(
      `loadgen: received ${json.packets_received}, sent ${json.packets_sent}; at most ${seen.loadgenOriginMax} from its own publishers, ` +
        `so >= ${seen.excess} from the browsers (${seen.receivers} clients x ${browserSent} browser packets sent by the end of the poll = ${seen.expectedFromBrowsers}; share ${seen.share === null ? '-' : seen.share.toFixed(2)})`,
    );
    if (!seen.ok) {
      // The bound only separates the browsers' share while the loadgen's own loss is small.
      checks.push(
        `loadgen clients did not receive the browsers' media: at least ${seen.excess} packets beyond its own, want >= half of ${seen.expectedFromBrowsers} ` +
          `(loadgen loss ${Number(json.loss_percent).toFixed(2)} %, one-way delay p50 ${json.delay_ms && json.delay_ms.p50} ms)`,
      );
    }
    if (checks.length) fail(checks.join('; '));
  } catch (error) {
    if (!(error instanceof ScenarioFailure)) state.failures.push(`harness error: ${error.stack || error.message}`);
  }
  if (cleanup.interrupted()) state.failures.unshift(`interrupted by ${cleanup.interrupted()}`);

  if (state.loadgen && !state.loadgenResult) state.loadgenResult = await state.loadgen.stop();
  await Promise.all(state.peers.map((p) => p.browser.close()));
  const result = await finish(state, { ...cfg, label, say, loadgenNames, subscriberNames, browserNames: browserNames() });
  if (state.server) say(`server stopped: ${JSON.stringify(await state.server.stop())}`);
  result.durationMs = Date.now() - startedAt;
  say(`${result.ok ? 'PASS' : 'FAIL'} in ${(result.durationMs / 1000).toFixed(1)} s`);
  return result;
}

/** Display name of participant `id` as listed in a page snapshot (the id itself otherwise). */
function nameIn(snapshot, id) {
  const entry = ((snapshot && snapshot.participants) || []).find(([pid]) => pid === id);
  return entry ? entry[1] : id;
}

async function finish(state, { label, say, browsers, publishers, subscribers, durationS, pollS, loadgenNames, browserNames }) {
  const ok = state.failures.length === 0;
  const tables = state.peers.map((p) => room.browserTable(p.name, p.latest, (id) => nameIn(p.latest, id)));
  const lg = state.loadgenResult;
  const lgLine = lg && lg.json ? `loadgen (${state.loadgen.argv.slice(1).join(' ')}): ${JSON.stringify(lg.json)}` : `loadgen: ${lg ? `exit ${lg.code}, no JSON` : 'not run'}`;
  const text = `${tables.join('\n\n')}\n\n${lgLine}`;
  say(`${ok ? 'ok' : 'FAILED'}: per-browser statistics at the end of the poll\n${text}`);

  let metrics = null;
  if (state.server && !state.server.exitInfo) metrics = await state.server.metrics();
  const keyMetrics = pickMetrics(metrics, ['sluice_sessions', 'sluice_participants', 'sluice_rooms', 'sluice_dtls_handshakes', 'sluice_packets_', 'sluice_router_']).filter((l) => !/ 0(\.0)?$/.test(l));
  if (!ok) {
    const evidence = state.peers.map((p) => {
      const s = p.latest;
      if (!s) return `--- ${p.name}: no snapshot`;
      return [
        `--- ${p.name} state=${s.state} id=${s.participantId} pc=${s.connectionState} error=${JSON.stringify(s.error)}`,
        `  participants=${JSON.stringify(s.participants)}`,
        `  last events: ${s.lastEvents.map((e) => JSON.stringify(e)).join(' ')}`,
        ...p.browser.console.slice(-10).map((l) => `  ${l}`),
      ].join('\n');
    });
    say(
      `FAILURES:\n  ${state.failures.join('\n  ')}\nEVIDENCE:\n${evidence.join('\n')}\n` +
        `LOADGEN STDERR (tail):\n${lg ? lg.stderr.slice(-2000) : '-'}\n` +
        `SERVER METRICS (non-zero):\n  ${keyMetrics.join('\n  ') || '(none)'}\n` +
        `SERVER LOG (last 40 lines):\n${state.server ? state.server.log.tail(40) : '(no server)'}`,
    );
  }

  const summary = {
    label,
    ok,
    failures: state.failures,
    room: state.roomName,
    config: { browsers, publishers, subscribers, durationS, pollS },
    phases: state.phases,
    browsers: state.peers.map((p) => {
      const s = p.latest;
      const tracks = [];
      for (const [peer, kinds] of room.tracksByPeer(s)) {
        for (const [kind, totals] of kinds) tracks.push({ peer, name: nameIn(s, peer), kind, ...totals });
      }
      return {
        name: p.name,
        id: s ? s.participantId : null,
        connectionState: s ? s.connectionState : null,
        dtls: s && s.transport ? { state: s.transport.dtlsState, role: s.transport.dtlsRole, srtpCipher: s.transport.srtpCipher } : null,
        path: s ? s.path : null,
        participantsListed: s ? s.participants.length : 0,
        participantsSending: s ? room.tracksByPeer(s).size : 0,
        tracks,
        outbound: s ? s.outbound : [],
      };
    }),
    loadgen: {
      argv: state.loadgen ? state.loadgen.argv : null,
      exitCode: lg ? lg.code : null,
      json: lg ? lg.json : null,
      publisherNames: loadgenNames,
      browserMedia: state.sawBrowsers || null,
    },
    browserNames,
    serverMetrics: keyMetrics,
  };

  const resultsDir = path.join(process.env.SLUICE_BROWSER_RESULTS || RESULTS_DIR, label);
  try {
    fs.mkdirSync(resultsDir, { recursive: true });
    fs.writeFileSync(path.join(resultsDir, 'table.txt'), `${text}\n`);
    fs.writeFileSync(path.join(resultsDir, 'summary.json'), `${JSON.stringify(summary, null, 1)}\n`);
    fs.writeFileSync(path.join(resultsDir, 'participants.json'), JSON.stringify(state.peers.map((p) => ({ name: p.name, console: p.browser.console, snapshots: p.snapshots })), null, 1));
    fs.writeFileSync(path.join(resultsDir, 'server.log'), state.server ? state.server.log.text() : '');
    fs.writeFileSync(path.join(resultsDir, 'metrics.txt'), metrics || '');
    fs.writeFileSync(path.join(resultsDir, 'loadgen.txt'), lg ? `${lg.stdout}\n--- stderr\n${lg.stderr}` : '');
  } catch (error) {
    say(`could not write results to ${resultsDir}: ${error.message}`);
  }
  return { ok, failures: state.failures, tables, summary, resultsDir };
}

module.exports = { runLoadgenRoom, roomSnapshot, DEFAULTS, TIMINGS };
