'use strict';
// The group-call scenario: N browsers join one room, every one must receive audio and decode
// video from every other one, keep doing so, and see a leaver go. Returns a result object
// (never throws for a failed check: failures are listed) and always cleans up.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

const cleanup = require('./cleanup');
const { startServer, pickMetrics } = require('./server');
const { launchParticipant, pageSnapshot, chromiumBinary } = require('./browser');
const { freeUdpPort } = require('./ports');
const { createImpairedNetwork } = require('./netns');
const { startRelay } = require('./relay');
const analysis = require('./analysis');

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
const RESULTS_DIR = path.resolve(__dirname, '..', 'results');

const DEFAULT_TIMINGS = {
  /** Media from every peer must flow this soon after the pages were opened. */
  mediaDeadlineMs: 20000,
  /** Then keep flowing this long ... */
  steadyMs: 30000,
  /** ... advancing in every window of this length. */
  windowMs: 5000,
  /** The others must see a leaver go this soon. */
  leaveDeadlineMs: 10000,
  /** After a leave, the rest must still receive from each other for one window. */
  afterLeaveMs: 5000,
  pollIntervalMs: 1000,
  /** One snapshot round trip may take this long before the page counts as hung. */
  snapshotTimeoutMs: 5000,
};

/** Lead time for scheduling the simultaneous Join presses (joinBy 'click'). */
const JOIN_SCHEDULE_MS = 1000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ScenarioFailure extends Error {}
/** Thrown to end a run early with success (no leave phase). */
class ScenarioDone extends Error {}

/**
 * Runs one call. Options: { dtlsRole, participants, leaveBy: 'click' | 'close' | null (no
 * leave phase), label, timings, startServer, dtls (extra server dtls.* keys), joinBy:
 * 'autojoin' (pages open with ?autojoin=1) | 'click' (pages load first, then every Join
 * button is pressed at once), impairment }.
 *
 * impairment: { participant: index, upRateKbit, downRateKbit, relayArgs: [...], seed,
 * lossyVideo: 'phase' (default: video over the impaired link must advance during the steady
 * phase) | 'once' (it must have been decoded, but may stay frozen, e.g. at 30 % loss) }. That
 * participant's Chromium runs in its own network namespace (lib/netns.js) and reaches the
 * server's media port only through the netsim relay on the host end of its veth; the
 * server announces 127.0.0.1 first (the clean participants' path) and the relay second,
 * and serves the page on the veth address so that every participant can load it.
 * Returns { ok, failures, table, summary, resultsDir }.
 */
async function runCall(options) {
  const {
    dtlsRole = 'auto',
    participants: count = 4,
    leaveBy = 'click',
    joinBy = 'autojoin',
    dtls = {},
    // Extra `media:` keys of the server's configuration. By default these calls run
    // without simulcast: five Chromium encoding three encodings each do not fit two
    // cores, and what these scenarios check (handshakes, media flowing, leaves) does not
    // depend on it; simulcast.test.js and bandwidth.test.js (which passes {}) cover it.
    media = { simulcast: false },
    impairment = null,
    label = `call-${dtlsRole}`,
    log = (line) => process.stdout.write(`${line}\n`),
    // Injectable for the mock SFU (mock/server.js); same interface as lib/server.js.
    startServer: start = startServer,
  } = options;
  const timings = { ...DEFAULT_TIMINGS, ...(options.timings || {}) };
  const room = `${label}-${crypto.randomBytes(3).toString('hex')}`;
  const startedAt = Date.now();
  const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1)}s`;
  const say = (line) => log(`[${label} ${elapsed()}] ${line}`);

  const state = {
    server: null,
    net: null,
    relay: null,
    relayStats: null,
    joinSpreadMs: null,
    peers: [], // { name, browser, snapshots: [], left: false }
    failures: [],
    phases: {},
  };

  const fail = (message) => {
    state.failures.push(message);
    throw new ScenarioFailure(message);
  };

  const snapshot = async (peer) => {
    try {
      const snap = await cleanup.withTimeout(
        peer.browser.page.evaluate(pageSnapshot),
        timings.snapshotTimeoutMs,
        `snapshot of ${peer.name}`,
      );
      if (snap && !snap.missing) {
        // Events are cumulative: keep only the newest copy to bound memory.
        peer.events = snap.events;
        peer.transportEvents = snap.transportEvents || [];
        peer.snapshots.push({ ...snap, events: undefined, transportEvents: undefined });
        peer.latest = snap;
      }
      return snap;
    } catch (error) {
      return { harnessError: error.message };
    }
  };

  const pollAll = async (peers) => {
    const snaps = await Promise.all(peers.map(snapshot));
    const problems = [];
    snaps.forEach((snap, i) => {
      const peer = peers[i];
      if (!snap || snap.missing) problems.push(`${peer.name}: window.sluice missing (page did not load app.js)`);
      else if (snap.harnessError) problems.push(`${peer.name}: ${snap.harnessError}`);
      else if (snap.state === 'closed' || snap.state === 'left' || snap.state === 'reconnecting') {
        problems.push(`${peer.name}: page state '${snap.state}' (${JSON.stringify(snap.error || '')})`);
      } else if (snap.stats && snap.stats.connectionState === 'failed') {
        problems.push(`${peer.name}: RTCPeerConnection failed`);
      }
    });
    if (problems.length > 0) fail(problems.join('; '));
    return snaps;
  };

  const idsOf = (peers) => peers.map((p) => p.latest && p.latest.participantId);

  try {
    let extraFlags = [];
    let impairedExecutable = null;
    if (impairment) {
      state.net = createImpairedNetwork({ upRateKbit: impairment.upRateKbit, downRateKbit: impairment.downRateKbit });
      const { hostAddr, nsAddr, name: netnsName } = state.net;
      const relayPort = await freeUdpPort(hostAddr);
      const mediaPort = await freeUdpPort();
      const relayAddr = `${hostAddr}:${relayPort}`;
      state.server = await start({
        dtlsRole,
        dtls,
        httpHost: hostAddr,
        mediaPort,
        announce: ['127.0.0.1', relayAddr],
        media,
      });
      state.relay = await startRelay({
        listen: relayAddr,
        upstream: `127.0.0.1:${mediaPort}`,
        args: impairment.relayArgs || [],
        seed: impairment.seed || 1,
      });
      const wrapperDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-netns-wrapper-'));
      cleanup.trackDir(wrapperDir);
      impairedExecutable = state.net.chromiumWrapper(chromiumBinary(), wrapperDir);
      extraFlags = [`--unsafely-treat-insecure-origin-as-secure=${state.server.url}`];
      say(
        `netns ${netnsName}: ${nsAddr}/30 <-> ${hostAddr}/30, tbf up ${impairment.upRateKbit || '-'} kbit/s ` +
          `down ${impairment.downRateKbit || '-'} kbit/s; relay ${relayAddr} -> 127.0.0.1:${mediaPort} ` +
          `[${(impairment.relayArgs || []).join(' ')}]`,
      );
    } else {
      state.server = await start({ dtlsRole, dtls, media });
    }
    say(`server pid ${state.server.pid} on ${state.server.url}, media 127.0.0.1:${state.server.mediaPort}, dtls.role ${dtlsRole}`);

    for (let i = 0; i < count; i += 1) {
      const name = NAMES[i] || `peer${i}`;
      const launchStart = Date.now();
      const impaired = Boolean(impairment) && i === (impairment.participant || 0);
      const launch = () => launchParticipant(name, { executablePath: impaired ? impairedExecutable : null, extraFlags });
      let browser;
      try {
        browser = await launch();
      } catch (error) {
        // Chromium 148 occasionally dies with SIGSEGV during start-up on a loaded machine
        // (seen once in ~100 launches); one retry with a fresh profile, then give up.
        say(`launching ${name} failed (${error.message.split('\n')[0]}); retrying once`);
        browser = await launch();
      }
      state.peers.push({ name, browser, impaired, snapshots: [], events: [], latest: null, left: false });
      say(`launched ${name}${impaired ? ' (impaired, in the namespace)' : ''} in ${Date.now() - launchStart} ms`);
    }

    const pageUrl = (peer, autojoin) =>
      `${state.server.url}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(peer.name)}${autojoin ? '&autojoin=1' : ''}&subscribe=all`;
    if (joinBy === 'click') {
      // Pages load first; then every participant presses Join within a few milliseconds.
      await Promise.all(state.peers.map((peer) => peer.browser.open(pageUrl(peer, false))));
      // Open the fake camera once beforehand so that the page's own getUserMedia returns at
      // once, then press Join in every page at the same wall-clock moment (one clock).
      await Promise.all(
        state.peers.map((peer) =>
          peer.browser.page.evaluate(async () => {
            window.warmStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
          }),
        ),
      );
      const clickAt = Date.now() + JOIN_SCHEDULE_MS;
      await Promise.all(
        state.peers.map((peer) =>
          peer.browser.page.evaluate((at) => {
            setTimeout(() => document.getElementById('join').click(), Math.max(0, at - Date.now()));
          }, clickAt),
        ),
      );
      for (const peer of state.peers) peer.browser.openedAt = clickAt;
      await sleep(Math.max(0, clickAt - Date.now()));
      say(`${count} Join buttons pressed at the same moment`);
    } else {
      // All pages open at (nearly) the same moment: a real meeting start.
      await Promise.all(state.peers.map((peer) => peer.browser.open(pageUrl(peer, true))));
    }
    const openedAt = Math.min(...state.peers.map((p) => p.browser.openedAt));
    say(`${count} pages open in room ${room}`);

    // Phase 1: media from everyone to everyone within the deadline.
    const mediaDeadline = openedAt + timings.mediaDeadlineMs;
    let previous = null;
    let mediaUpAt = null;
    let lastMissing = [];
    while (mediaUpAt === null) {
      if (state.server.exitInfo) fail(`server exited: ${JSON.stringify(state.server.exitInfo)}`);
      const snaps = await pollAll(state.peers);
      const ids = idsOf(state.peers);
      if (previous && ids.every(Boolean)) {
        lastMissing = [];
        state.peers.forEach((peer, i) => {
          const { strict, lossy } = splitOthers(state.peers, i, ids);
          const missing = [
            ...analysis.missingMedia(previous[i], snaps[i], strict),
            // Over the impaired link: video decoded at all so far, audio still arriving.
            ...analysis.missingMedia(previous[i], snaps[i], lossy, ['audio']),
            ...analysis.neverDecoded(snaps[i], lossy),
          ];
          for (const m of missing) lastMissing.push(`${peer.name} <- ${nameOf(state.peers, m.peer)} ${m.kind}`);
        });
        if (lastMissing.length === 0) mediaUpAt = Date.now();
      }
      if (mediaUpAt === null) {
        if (Date.now() > mediaDeadline) {
          const joined = state.peers.map((p, i) => `${p.name}=${ids[i] || 'not joined'}`).join(' ');
          fail(
            `media not flowing between all ${count} participants within ${timings.mediaDeadlineMs} ms ` +
              `(${joined}); missing: ${lastMissing.join('; ') || 'participants did not all join'}`,
          );
        }
        previous = snaps;
        await sleep(timings.pollIntervalMs);
      }
    }
    state.phases.mediaUpMs = mediaUpAt - openedAt;
    say(`media flowing everywhere after ${state.phases.mediaUpMs} ms`);

    // When the join messages went out (the page logs ws_open right before sending join).
    const joinTimes = state.peers.map((p) => (p.events.find((e) => e.type === 'ws_open') || {}).t).filter(Boolean);
    if (joinTimes.length === count) state.joinSpreadMs = Math.max(...joinTimes) - Math.min(...joinTimes);

    // Each participant must use the path meant for it: the impaired one the relay, the
    // others the server's own port. Otherwise the run measured something else.
    if (impairment) {
      const relayAddr = state.relay.listen;
      const direct = `127.0.0.1:${state.server.mediaPort}`;
      const wrong = state.peers
        .map((p) => [p, p.latest.stats.path && p.latest.stats.path.remote])
        .filter(([p, remote]) => remote !== (p.impaired ? relayAddr : direct));
      if (wrong.length > 0) {
        fail(
          `participants on the wrong path (impaired must use ${relayAddr}, others ${direct}): ` +
            wrong.map(([p, remote]) => `${p.name}=${remote}`).join(', '),
        );
      }
    }

    // A forced server role must show up as the complementary role in every browser, or the
    // run did not test what its name says.
    const expectedBrowserRole = { client: 'server', server: 'client' }[dtlsRole];
    if (expectedBrowserRole) {
      const wrong = state.peers
        .map((p) => [p.name, p.latest.stats.transport && p.latest.stats.transport.dtlsRole])
        .filter(([, role]) => role !== expectedBrowserRole);
      if (wrong.length > 0) {
        fail(
          `dtls.role ${dtlsRole} should make every browser the DTLS ${expectedBrowserRole}; got ` +
            wrong.map(([name, role]) => `${name}=${role}`).join(', '),
        );
      }
    }

    // Phase 2: steady state, checked per window.
    const steadyStart = Date.now();
    const steadyEnd = steadyStart + timings.steadyMs;
    while (Date.now() < steadyEnd + timings.pollIntervalMs / 2) {
      if (state.server.exitInfo) fail(`server exited: ${JSON.stringify(state.server.exitInfo)}`);
      await pollAll(state.peers);
      await sleep(Math.min(timings.pollIntervalMs, Math.max(0, steadyEnd + timings.pollIntervalMs - Date.now())));
    }
    {
      const ids = idsOf(state.peers);
      const problems = [];
      state.peers.forEach((peer, i) => {
        const { strict, lossy } = splitOthers(state.peers, i, ids);
        const windows = [
          ...analysis.checkWindows(peer.snapshots, steadyStart, steadyEnd, timings.windowMs, strict),
          // Over the impaired link: receiving in every window, video advancing over the phase.
          ...analysis.checkWindows(peer.snapshots, steadyStart, steadyEnd, timings.windowMs, lossy, ['audio']),
          ...(impairment && impairment.lossyVideo === 'once'
            ? []
            : analysis.checkWindows(peer.snapshots, steadyStart, steadyEnd, steadyEnd - steadyStart, lossy, ['video'])),
        ];
        for (const w of windows) {
          problems.push(
            `${peer.name} ${((w.from - steadyStart) / 1000).toFixed(0)}-${((w.to - steadyStart) / 1000).toFixed(0)}s: ` +
              w.missing.map((m) => `${nameOf(state.peers, m.peer)} ${m.kind}`).join(', '),
          );
        }
      });
      if (problems.length > 0) fail(`media stalled during the ${timings.steadyMs} ms steady phase: ${problems.join('; ')}`);
    }
    say(`steady for ${timings.steadyMs} ms: every ${timings.windowMs} ms window advanced for every peer`);

    if (leaveBy === null) throw new ScenarioDone();

    // Phase 3: the last participant leaves; the others must see it go.
    const leaver = state.peers[state.peers.length - 1];
    const leaverId = leaver.latest.participantId;
    const stayers = state.peers.slice(0, -1);
    const leaveAt = Date.now();
    if (leaveBy === 'click') {
      await leaver.browser.page.click('#leave');
    } else {
      await leaver.browser.page.close({ runBeforeUnload: true });
    }
    leaver.left = true;
    say(`${leaver.name} (${leaverId}) left by ${leaveBy}`);
    let goneAt = null;
    let reasons = [];
    while (goneAt === null) {
      const snaps = await pollAll(stayers);
      reasons = [];
      snaps.forEach((snap, i) => {
        const verdict = analysis.peerGone({ ...snap, events: stayers[i].events }, leaverId);
        if (!verdict.gone) reasons.push(`${stayers[i].name}: ${verdict.reasons.join(', ')}`);
      });
      if (reasons.length === 0) goneAt = Date.now();
      else if (Date.now() - leaveAt > timings.leaveDeadlineMs) {
        fail(`${leaver.name} not gone for the others within ${timings.leaveDeadlineMs} ms: ${reasons.join('; ')}`);
      } else await sleep(Math.min(timings.pollIntervalMs, 250 + Math.max(0, leaveAt + timings.leaveDeadlineMs - Date.now())));
    }
    state.phases.leaveSeenMs = goneAt - leaveAt;
    say(`${leaver.name} gone for everyone after ${state.phases.leaveSeenMs} ms`);

    // Phase 4: the rest keep receiving from each other after the re-offer.
    const afterStart = Date.now();
    while (Date.now() < afterStart + timings.afterLeaveMs + timings.pollIntervalMs / 2) {
      await pollAll(stayers);
      await sleep(timings.pollIntervalMs);
    }
    {
      const ids = idsOf(stayers);
      const problems = [];
      stayers.forEach((peer, i) => {
        const others = ids.filter((_, j) => j !== i);
        const windows = analysis.checkWindows(peer.snapshots, afterStart, afterStart + timings.afterLeaveMs, timings.afterLeaveMs, others);
        for (const w of windows) {
          problems.push(`${peer.name}: ${w.missing.map((m) => `${nameOf(state.peers, m.peer)} ${m.kind}`).join(', ')}`);
        }
      });
      if (problems.length > 0) fail(`media stopped between the remaining participants after the leave: ${problems.join('; ')}`);
    }
    say(`remaining ${stayers.length} still exchange media`);
  } catch (error) {
    if (!(error instanceof ScenarioFailure) && !(error instanceof ScenarioDone)) state.failures.push(`harness error: ${error.stack || error.message}`);
  }
  if (cleanup.interrupted()) state.failures.unshift(`interrupted by ${cleanup.interrupted()}: browsers and server were stopped`);

  // Evidence and report, then teardown (always).
  await Promise.all(state.peers.map((p) => p.browser.close()));
  if (state.relay) state.relayStats = await state.relay.stop();
  const result = await finish(state, { label, room, dtlsRole, leaveBy, say, impairment, dtls, joinBy });
  if (state.server) {
    const exit = await state.server.stop();
    say(`server stopped: ${JSON.stringify(exit)}`);
  }
  if (state.net) state.net.teardown();
  result.durationMs = Date.now() - startedAt;
  return result;
}

/** Whether any inbound video entry of `snapshot` carries `field` at all. */
function reported(snapshot, field) {
  const inbound = (snapshot && snapshot.stats && snapshot.stats.inbound) || [];
  return inbound.some((e) => e.kind === 'video' && e[field] !== undefined);
}

/**
 * The other participants of peers[i], split by what is asked of the media between them:
 * `strict` (clean path both ways: audio and video advance in every window) and `lossy`
 * (either end is the impaired participant: audio keeps arriving in every window, video is
 * decoded and advances over the steady phase, but may freeze within a window).
 */
function splitOthers(peers, i, ids) {
  const strict = [];
  const lossy = [];
  peers.forEach((other, j) => {
    if (j === i) return;
    (peers[i].impaired || other.impaired ? lossy : strict).push(ids[j]);
  });
  return { strict, lossy };
}

function nameOf(peers, id) {
  const peer = peers.find((p) => p.latest && p.latest.participantId === id);
  return peer ? peer.name : id;
}

async function finish(state, { label, room, dtlsRole, leaveBy, say, impairment, dtls, joinBy }) {
  const { peers } = state;
  const opened = (p) => p.browser.openedAt || 0;
  const serverHandshakes = state.server ? analysis.serverHandshakes(state.server.log.text()) : new Map();
  const ms = (value) => (value === null || value === undefined ? '-' : `${value} ms`);
  const summaries = peers.map((peer) => {
    const last = peer.latest;
    const firstFrames = analysis.timeToFirstFrame(peer.snapshots, opened(peer));
    const others = peers.filter((o) => o !== peer).map((o) => o.latest && o.latest.participantId);
    const frameTimes = others.map((id) => (id ? firstFrames.get(id) : undefined));
    const id = (last && last.participantId) || null;
    return {
      name: peer.name,
      id,
      impaired: Boolean(peer.impaired),
      path: (last && last.stats && last.stats.path) || null,
      connectedMs: analysis.timeToConnected(peer.events, opened(peer)),
      dtlsHandshakeMs: analysis.dtlsHandshakeTime(peer.transportEvents),
      // The server logs the numeric id (participant=3), the page shows its text form (p-3).
      serverHandshakeMs: id ? serverHandshakes.get(id) ?? serverHandshakes.get(id.replace(/^\D+/, '')) ?? null : null,
      dtls: (last && last.stats && last.stats.transport && `${last.stats.transport.dtlsRole || '?'}/${last.stats.transport.dtlsState}`) || null,
      firstFrameFromEachMs: frameTimes.map((t) => (t === undefined ? null : t)),
      firstFrameFromAllMs: frameTimes.every((t) => t !== undefined) && frameTimes.length ? Math.max(...frameTimes) : null,
      framesDecoded: last ? analysis.sumInbound(last, 'framesDecoded', 'video') : null,
      freezeCount: last ? analysis.sumInbound(last, 'freezeCount', 'video') : null,
      freezesSeconds: last ? Number(analysis.sumInbound(last, 'totalFreezesDuration', 'video').toFixed(1)) : null,
      packetsLost: last ? analysis.sumInbound(last, 'packetsLost') : null,
      videoPacketsLost: last ? analysis.sumInbound(last, 'packetsLost', 'video') : null,
      // video FEC (ULPFEC in RED) the browser received and how much of it it did not need
      // (null where the browser does not report them for video)
      fecPacketsReceived: reported(last, 'fecPacketsReceived') ? analysis.sumInbound(last, 'fecPacketsReceived', 'video') : null,
      fecPacketsDiscarded: reported(last, 'fecPacketsDiscarded') ? analysis.sumInbound(last, 'fecPacketsDiscarded', 'video') : null,
      nackCount: last ? analysis.sumInbound(last, 'nackCount', 'video') : null,
      retransmittedPacketsReceived: last ? analysis.sumInbound(last, 'retransmittedPacketsReceived', 'video') : null,
      audioSamples: last ? analysis.sumInbound(last, 'totalSamplesReceived', 'audio') : null,
      // audio the decoder had to invent for lost packets (percent of samples played)
      audioConcealedPercent: last
        ? Number(
            (
              (100 * analysis.sumInbound(last, 'concealedSamples', 'audio')) /
              Math.max(1, analysis.sumInbound(last, 'totalSamplesReceived', 'audio'))
            ).toFixed(2),
          )
        : null,
      // the height of each camera it decodes now (which simulcast encoding it gets)
      inboundHeights: last ? (last.stats.inbound || []).filter((s) => s.kind === 'video').map((s) => s.frameHeight || 0) : [],
      bytesReceived: last ? analysis.sumInbound(last, 'bytesReceived') : null,
    };
  });
  const header = [
    'participant',
    'id',
    'path',
    'connected',
    'dtls hs (browser)',
    'dtls hs (server)',
    'dtls',
    '1st frame from all',
    'frames',
    'freezes',
    'pkts lost',
    'audio samples',
    'audio concealed',
  ];
  const rows = summaries.map((p) => [
    `${p.name}${p.impaired ? ' *' : ''}`,
    p.id || '-',
    p.path ? `${p.path.remote}${p.path.rttMs !== null ? ` rtt ${p.path.rttMs}` : ''}` : '-',
    ms(p.connectedMs),
    ms(p.dtlsHandshakeMs),
    ms(p.serverHandshakeMs),
    p.dtls || '-',
    ms(p.firstFrameFromAllMs),
    p.framesDecoded === null ? '-' : p.framesDecoded,
    p.freezeCount === null ? '-' : `${p.freezeCount} (${p.freezesSeconds} s)`,
    p.packetsLost === null ? '-' : p.packetsLost,
    p.audioSamples === null ? '-' : p.audioSamples,
    p.audioConcealedPercent === null ? '-' : `${p.audioConcealedPercent} %`,
  ]);
  const table = analysis.formatTable(header, rows);
  const ok = state.failures.length === 0;
  say(`${ok ? 'PASS' : 'FAIL'} (dtls.role ${dtlsRole}, leave by ${leaveBy})\n${table}`);

  let metrics = null;
  if (state.server && !state.server.exitInfo) metrics = await state.server.metrics();
  const serverCounters = {
    handshakesStarted: analysis.metricValue(metrics, 'sluice_dtls_handshakes_started_total'),
    handshakesCompleted: analysis.metricValue(metrics, 'sluice_dtls_handshakes_completed_total'),
    handshakesFailed: analysis.metricValue(metrics, 'sluice_dtls_handshakes_failed_total'),
    retransmissions: analysis.metricValue(metrics, 'sluice_dtls_retransmissions_total'),
    fecPacketsSent: analysis.metricValue(metrics, 'sluice_router_fec_packets_sent_total'),
  };
  // The join spread as the server saw it (authoritative); the pages' ws_open times otherwise.
  const serverSpread = state.server ? analysis.serverJoinSpread(state.server.log.text(), room) : null;
  if (serverSpread !== null) state.joinSpreadMs = serverSpread;
  const summary = {
    label,
    dtlsRole,
    dtls,
    joinBy,
    joinSpreadMs: state.joinSpreadMs,
    impairment: impairment
      ? { ...impairment, netns: state.net && state.net.name, hostAddr: state.net && state.net.hostAddr, nsAddr: state.net && state.net.nsAddr }
      : null,
    relayStats: state.relayStats,
    server: serverCounters,
    mediaUpMs: state.phases.mediaUpMs === undefined ? null : state.phases.mediaUpMs,
    participants: summaries,
  };
  say(
    `server: handshakes started ${serverCounters.handshakesStarted} completed ${serverCounters.handshakesCompleted} ` +
      `failed ${serverCounters.handshakesFailed}, dtls retransmissions ${serverCounters.retransmissions}` +
      (state.joinSpreadMs === null ? '' : `; join messages sent within ${state.joinSpreadMs} ms`),
  );
  const keyMetrics = pickMetrics(metrics, [
    'sluice_sessions',
    'sluice_participants',
    'sluice_rooms',
    'sluice_dtls_handshakes',
    'sluice_dtls_retransmissions',
    'sluice_packets_',
    'sluice_ice_consent',
  ]).filter((line) => !/ 0(\.0)?$/.test(line));

  if (!ok) {
    const evidence = [];
    for (const peer of peers) {
      const last = peer.latest;
      evidence.push(`--- ${peer.name}${peer.left ? ' (left)' : ''}`);
      if (!last) {
        evidence.push('  no snapshot (page never answered)');
      } else {
        evidence.push(`  state=${last.state} id=${last.participantId} pc=${last.stats.connectionState} error=${JSON.stringify(last.error)}`);
        evidence.push(`  transport=${JSON.stringify(last.stats.transport)}`);
        evidence.push(`  tiles=${JSON.stringify(last.tiles)} mlines=${JSON.stringify(last.mlines)}`);
        for (const entry of last.stats.inbound) evidence.push(`  in  ${JSON.stringify(entry)}`);
        for (const entry of last.stats.outbound) evidence.push(`  out ${JSON.stringify(entry)}`);
      }
      const events = peer.events.slice(-25).map((e) => JSON.stringify(e));
      evidence.push(`  last events:\n    ${events.join('\n    ') || '(none)'}`);
      if (peer.browser.console.length) evidence.push(`  console:\n    ${peer.browser.console.slice(-15).join('\n    ')}`);
    }
    say(
      `FAILURES:\n  ${state.failures.join('\n  ')}\nEVIDENCE:\n${evidence.join('\n')}\n` +
        `SERVER METRICS (non-zero):\n  ${keyMetrics.join('\n  ') || '(none)'}\n` +
        `SERVER LOG (last 60 lines):\n${state.server ? state.server.log.tail(60) : '(no server)'}`,
    );
  }

  // Full artefacts for later reading: tests/browser/results/<label>/.
  const resultsDir = path.join(process.env.SLUICE_BROWSER_RESULTS || RESULTS_DIR, label);
  try {
    fs.mkdirSync(resultsDir, { recursive: true });
    fs.writeFileSync(path.join(resultsDir, 'server.log'), state.server ? state.server.log.text() : '');
    fs.writeFileSync(path.join(resultsDir, 'metrics.txt'), metrics || '');
    fs.writeFileSync(path.join(resultsDir, 'table.txt'), `${table}\n`);
    fs.writeFileSync(path.join(resultsDir, 'summary.json'), `${JSON.stringify(summary, null, 1)}\n`);
    fs.writeFileSync(
      path.join(resultsDir, 'participants.json'),
      JSON.stringify(
        {
          room,
          dtlsRole,
          leaveBy,
          ok,
          failures: state.failures,
          phases: state.phases,
          participants: peers.map((p) => ({
            name: p.name,
            openedAt: p.browser.openedAt,
            console: p.browser.console,
            events: p.events,
            snapshots: p.snapshots,
          })),
        },
        null,
        1,
      ),
    );
  } catch (error) {
    say(`could not write results to ${resultsDir}: ${error.message}`);
  }
  return { ok, failures: state.failures, table, summary, phases: state.phases, resultsDir };
}

module.exports = { runCall, DEFAULT_TIMINGS };
