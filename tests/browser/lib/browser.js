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
async function launchParticipant(name) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-browser-${name}-`));
  cleanup.trackDir(userDataDir);
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumBinary(),
      headless: true,
      args: CHROMIUM_FLAGS,
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
  return {
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

module.exports = { launchParticipant, pageSnapshot, chromiumBinary, CHROMIUM_FLAGS, browserPidsFor };
