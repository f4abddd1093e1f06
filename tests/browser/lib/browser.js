'use strict';
// One headless Chromium process per participant (fresh profile each), driven by
// playwright-core against the system binary: nothing is downloaded.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const cleanup = require('./cleanup');

/** Time a browser gets to start. */
const LAUNCH_TIMEOUT_MS = 30000;
/** Time a page gets to load. */
const NAVIGATION_TIMEOUT_MS = 15000;
/** Console/page-error lines kept per participant. */
const MAX_CONSOLE_LINES = 500;

/**
 * Flags from docs (shared design field notes) that work headless on a small machine.
 * --allow-loopback-in-peer-connection is required: without it Chromium gathers no
 * candidate on a loopback-only host and ICE never starts.
 */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
  // A hidden/background page must not throttle its timers or its media.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/** The Chromium binary: CHROMIUM_BIN, else Debian's real binary, else its wrapper. */
function chromiumBinary() {
  const candidates = [process.env.CHROMIUM_BIN, '/usr/lib/chromium/chromium', '/usr/bin/chromium'];
  for (const candidate of candidates) {
    if (candidate && fs.existsSync(candidate)) return candidate;
  }
  throw new Error('Chromium not found: run tests/browser/install.sh or set CHROMIUM_BIN');
}

/** Process ids whose command line names this profile directory and that are the browser process. */
function browserPidsFor(userDataDir) {
  const pids = [];
  let entries;
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return pids;
  }
  const needle = `--user-data-dir=${userDataDir}`;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let args;
    try {
      args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (args.includes(needle) && !args.some((a) => a.startsWith('--type='))) pids.push(Number(entry));
  }
  return pids;
}

class BoundedLines {
  constructor(max) {
    this.max = max;
    this.lines = [];
  }

  push(line) {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  }
}

/**
 * Launches one participant's browser. Returns { name, page, context, console, close() }.
 * The page is blank until `open(url)`.
 */
/**
 * Runs in every page before its scripts: records the DTLS and ICE transport state changes
 * of every RTCPeerConnection with timestamps (window.__sluiceTransport), so the handshake
 * time is measured from the browser's own transport events rather than the 1 s poll.
 * Self-contained: playwright serialises it into the page.
 */
function transportProbe() {
  const Native = window.RTCPeerConnection;
  if (!Native || Native.sluiceProbe) return;
  const events = [];
  window.__sluiceTransport = events;
  const watched = new WeakSet();
  const watch = (pc) => {
    for (const end of [...pc.getSenders(), ...pc.getReceivers()]) {
      const dtls = end.transport;
      if (!dtls || watched.has(dtls)) continue;
      watched.add(dtls);
      events.push({ t: Date.now(), type: 'dtls', state: dtls.state });
      dtls.addEventListener('statechange', () => {
        if (events.length < 200) events.push({ t: Date.now(), type: 'dtls', state: dtls.state });
      });
      const ice = dtls.iceTransport;
      if (ice) {
        ice.addEventListener('statechange', () => {
          if (events.length < 200) events.push({ t: Date.now(), type: 'ice', state: ice.state });
        });
      }
    }
  };
  class Probed extends Native {
    constructor(...args) {
      super(...args);
      for (const type of ['signalingstatechange', 'iceconnectionstatechange', 'connectionstatechange']) {
        this.addEventListener(type, () => watch(this));
      }
    }
  }
  Probed.sluiceProbe = true;
  window.RTCPeerConnection = Probed;
}

/**
 * Launches one participant's browser. Options: { executablePath (e.g. a wrapper that
 * enters a network namespace), extraFlags }. Returns { name, page, context, console,
 * close() }. The page is blank until `open(url)`.
 */
async function launchParticipant(name, { executablePath = null, extraFlags = [] } = {}) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-browser-${name}-`));
  cleanup.trackDir(userDataDir);
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: executablePath || chromiumBinary(),
      headless: true,
      args: [...CHROMIUM_FLAGS, ...extraFlags],
      timeout: LAUNCH_TIMEOUT_MS,
      // Our own cleanup registry handles signals (browsers first, then the server).
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      viewport: { width: 800, height: 600 },
      permissions: ['camera', 'microphone'],
    });
  } catch (error) {
    cleanup.removeDir(userDataDir);
    throw new Error(`could not launch Chromium for ${name}: ${error.message}`);
  }
  const pids = browserPidsFor(userDataDir);
  for (const pid of pids) cleanup.trackPid(pid);

  await context.addInitScript(transportProbe);
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(NAVIGATION_TIMEOUT_MS);
  const consoleLines = new BoundedLines(MAX_CONSOLE_LINES);
  page.on('console', (message) => {
    if (message.type() !== 'error' && message.type() !== 'warning') return;
    const where = message.location() && message.location().url;
    if (where && where.endsWith('/favicon.ico')) return; // the demo has none
    consoleLines.push(`${new Date().toISOString()} console.${message.type()}: ${message.text()}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (error) => consoleLines.push(`${new Date().toISOString()} pageerror: ${error.message}`));
  page.on('crash', () => consoleLines.push(`${new Date().toISOString()} page crashed`));

  let closed = null;
  const close = () => {
    if (closed) return closed;
    closed = (async () => {
      try {
        await context.close();
      } catch {
        // Already closed or crashed: the pid kill below covers it.
      }
      for (const pid of pids) {
        try {
          process.kill(pid, 0);
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone, as expected.
        }
        cleanup.untrackPid(pid);
      }
      cleanup.removeDir(userDataDir);
      unregister();
    })();
    return closed;
  };
  const unregister = cleanup.register(`browser ${name}`, close);

  return {
    name,
    page,
    context,
    pids,
    userDataDir,
    console: consoleLines.lines,
    openedAt: null,
    async open(url) {
      this.openedAt = Date.now();
      await page.goto(url, { waitUntil: 'load' });
    },
    close,
  };
}

/**
 * Runs in the page: everything the test needs in one round trip. Kept free of closures
 * because playwright serialises it into the page.
 */
async function pageSnapshot() {
  const s = window.sluice;
  if (!s) return { missing: true };
  const stats = await s.stats();
  const mlines = [];
  const pc = s.pc;
  if (pc && pc.remoteDescription && pc.remoteDescription.sdp) {
    const sections = pc.remoteDescription.sdp.split(/\r?\nm=/).slice(1);
    for (const section of sections) {
      const kind = section.split(' ')[0];
      const mid = (section.match(/\na=mid:(\S+)/) || [])[1] || null;
      const direction = (section.match(/\na=(sendrecv|sendonly|recvonly|inactive)/) || [])[1] || 'sendrecv';
      const msid = (section.match(/\na=msid:(\S+)/) || [])[1] || null;
      mlines.push({ kind, mid, direction, msid });
    }
  }
  // Fields the page's own stats() leaves out: freezes, retransmission counts, and which
  // candidate pair carries the media (proves each participant took the path meant for it).
  const extra = new Map();
  let path = null;
  if (pc) {
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        const codec = r.codecId && report.get(r.codecId);
        extra.set(String(r.ssrc), {
          freezeCount: r.freezeCount,
          totalFreezesDuration: r.totalFreezesDuration,
          nackCount: r.nackCount,
          retransmittedPacketsReceived: r.retransmittedPacketsReceived,
          fecPacketsReceived: r.fecPacketsReceived,
          fecPacketsDiscarded: r.fecPacketsDiscarded,
          concealedSamples: r.concealedSamples,
          totalAudioEnergy: r.totalAudioEnergy,
          mimeType: codec ? codec.mimeType : undefined,
        });
      } else if (r.type === 'transport') pairId = r.selectedCandidatePairId;
    });
    const pair = pairId && report.get(pairId);
    if (pair) {
      const local = report.get(pair.localCandidateId) || {};
      const remote = report.get(pair.remoteCandidateId) || {};
      path = {
        local: `${local.address || local.ip}:${local.port}`,
        remote: `${remote.address || remote.ip}:${remote.port}`,
        rttMs: pair.currentRoundTripTime === undefined ? null : Math.round(pair.currentRoundTripTime * 1000),
      };
    }
  }
  for (const entry of stats.inbound) Object.assign(entry, extra.get(String(entry.ssrc)) || {});
  stats.path = path;
  return {
    transportEvents: (window.__sluiceTransport || []).slice(),
    now: Date.now(),
    state: s.state,
    participantId: s.participantId,
    participants: [...s.participants.entries()],
    error: (document.getElementById('error') || {}).textContent || '',
    tiles: [...document.querySelectorAll('.tile')].map((t) => t.dataset.participant),
    events: s.events.slice(),
    mlines,
    stats,
  };
}

module.exports = { launchParticipant, pageSnapshot, transportProbe, chromiumBinary, CHROMIUM_FLAGS, browserPidsFor };
