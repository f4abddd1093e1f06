'use strict';
// One headless Firefox ESR participant (Debian's `firefox-esr`, nothing downloaded), driven
// over WebDriver BiDi by puppeteer-core, in a network namespace of its own.
//
// Why the namespace: Firefox never gathers a 127/8 candidate (with
// `media.peerconnection.ice.loopback` it adds ::1 at most) and gathers no candidate at all
// when the machine has no default route, so it cannot reach a server announcing 127.0.0.1
// and cannot depend on how the CI machine is networked. In a namespace with a veth address
// and a default route via the host end it gathers exactly that address, and the server
// listens and announces on the host end (docs/architecture.md, "Browsers tried").
//
// Why not puppeteer's `launch`: the remote agent listens on the namespace's loopback only
// (`localhost` is hard-wired), which the test on the host cannot reach. So Firefox is
// started here with `ip netns exec`, a small forwarder (lib/forward.js) in the namespace
// exposes the BiDi port on the veth address, and puppeteer `connect`s to it.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const cleanup = require('./cleanup');
const { spawnTracked } = require('./child');
const { transportProbe } = require('./browser');

/** Time Firefox gets to start its remote agent, and the forwarder to bind. */
const LAUNCH_TIMEOUT_MS = 30000;
const NAVIGATION_TIMEOUT_MS = 15000;
const STOP_GRACE_MS = 5000;
const MAX_CONSOLE_LINES = 500;
/** BiDi ports inside a namespace (each namespace is private, so a fixed base is free). */
const BIDI_PORT_BASE = 9222;
let launched = 0;

/**
 * Prefs on top of puppeteer's automation defaults (written by @puppeteer/browsers'
 * createProfile: no first-run pages, updates, telemetry, safe browsing).
 */
function firefoxPrefs(serverHost) {
  return {
    // Fake camera and microphone, no permission prompt.
    'media.navigator.streams.fake': true,
    'media.navigator.permission.disabled': true,
    // The page is served on the host's veth address over plain http: let that origin
    // count as secure, so navigator.mediaDevices and getUserMedia exist.
    'dom.securecontext.allowlist': serverHost,
    // Real addresses in candidates and stats (the test checks which path was taken).
    'media.peerconnection.ice.obfuscate_host_addresses': false,
    // Autoplay of the remote tiles without a user gesture (0 = allowed).
    'media.autoplay.default': 0,
    'media.autoplay.blocking_policy': 0,
  };
}

function firefoxBinary() {
  const candidates = [process.env.FIREFOX_BIN, '/usr/bin/firefox-esr', '/usr/lib/firefox-esr/firefox-esr'];
  for (const candidate of candidates) {
    if (candidate && fs.existsSync(candidate)) return candidate;
  }
  throw new Error('Firefox ESR not found: run tests/browser/install.sh (apt firefox-esr) or set FIREFOX_BIN');
}

/** `firefox-esr --version`, e.g. "Mozilla Firefox 153.8.0esr", or null. */
function firefoxVersion() {
  try {
    return execFileSync(firefoxBinary(), ['--version'], { encoding: 'utf8', timeout: 10000 }).trim();
  } catch {
    return null;
  }
}

/** Resolves when `stream` has printed a line matching `pattern`; rejects on exit or timeout. */
function waitForLine(what, stream, exited, pattern, timeoutMs, tail) {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => finish(new Error(`${what}: nothing matching ${pattern} within ${timeoutMs} ms; output:\n${tail()}`)), timeoutMs);
    const onData = (chunk) => {
      buffer += chunk;
      const match = buffer.match(pattern);
      if (match) finish(null, match);
      if (buffer.length > 1 << 16) buffer = buffer.slice(-4096);
    };
    const finish = (error, match) => {
      clearTimeout(timer);
      stream.off('data', onData);
      if (error) reject(error);
      else resolve(match);
    };
    stream.on('data', onData);
    exited.then((info) => finish(new Error(`${what}: exited first (${JSON.stringify(info)}); output:\n${tail()}`)));
  });
}

/**
 * Launches one Firefox participant inside `net` (lib/netns.js, created with
 * `defaultRoute: true`), for pages the server serves on the host end (`net.hostAddr`). Returns the same shape as
 * browser.js launchParticipant: { name, page, browser, pids, profileDir, console, output(),
 * open(url), close() }.
 */
async function launchFirefoxParticipant(name, { net }) {
  // puppeteer-core and @puppeteer/browsers are ES modules: loaded here, so a Chromium-only
  // run never needs them.
  const puppeteer = require('puppeteer-core');
  const { createProfile, Browser } = require('@puppeteer/browsers');

  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-firefox-${name}-`));
  cleanup.trackDir(profileDir);
  await createProfile(Browser.FIREFOX, { path: profileDir, preferences: firefoxPrefs(net.hostAddr) });

  const port = BIDI_PORT_BASE + launched;
  launched += 1;
  const output = [];
  const keep = (chunk) => {
    output.push(chunk);
    if (output.length > 200) output.shift();
  };
  const tail = () => output.join('').split('\n').slice(-30).join('\n');

  const firefox = spawnTracked('ip', [
    'netns', 'exec', net.name, firefoxBinary(),
    '--headless', '--no-remote', '--profile', profileDir,
    `--remote-debugging-port=${port}`,
    'about:blank',
  ], { env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1' } });
  firefox.child.stdout.on('data', keep);
  firefox.child.stderr.on('data', keep);
  const forwarder = spawnTracked('ip', ['netns', 'exec', net.name, process.execPath, path.join(__dirname, 'forward.js'), net.nsAddr, String(port), '127.0.0.1', String(port)]);
  forwarder.child.stderr.on('data', keep);

  let browser = null;
  let closed = null;
  const close = () => {
    if (closed) return closed;
    closed = (async () => {
      if (browser) {
        try {
          await Promise.race([browser.close(), new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref())]);
        } catch {
          // Gone already: the terminate below covers it.
        }
      }
      await forwarder.terminate(STOP_GRACE_MS);
      await firefox.terminate(STOP_GRACE_MS);
      cleanup.removeDir(profileDir);
      unregister();
    })();
    return closed;
  };
  const unregister = cleanup.register(`firefox ${name}`, close);

  try {
    await Promise.all([
      waitForLine('firefox remote agent', firefox.child.stderr, firefox.exited, /WebDriver BiDi listening on (ws:\/\/\S+)/, LAUNCH_TIMEOUT_MS, tail),
      waitForLine('BiDi forwarder', forwarder.child.stdout, forwarder.exited, /listening/, LAUNCH_TIMEOUT_MS, tail),
    ]);
    // The remote agent's HTTP server only answers requests addressed to the name it bound
    // (127.0.0.1:port); through the forwarder the request must still say so.
    browser = await puppeteer.connect({
      browserWSEndpoint: `ws://${net.nsAddr}:${port}/session`,
      protocol: 'webDriverBiDi',
      headers: { Host: `127.0.0.1:${port}` },
    });
  } catch (error) {
    await close();
    throw new Error(`could not launch Firefox for ${name}: ${error.message}`);
  }

  const page = (await browser.pages())[0] || (await browser.newPage());
  page.setDefaultTimeout(NAVIGATION_TIMEOUT_MS);
  await page.evaluateOnNewDocument(transportProbe);
  const consoleLines = [];
  const note = (line) => {
    consoleLines.push(`${new Date().toISOString()} ${line}`);
    if (consoleLines.length > MAX_CONSOLE_LINES) consoleLines.shift();
  };
  page.on('console', (message) => {
    if (message.type() !== 'error' && message.type() !== 'warn' && message.type() !== 'warning') return;
    note(`console.${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => note(`pageerror: ${error.message}`));

  return {
    name,
    page,
    browser,
    /** Firefox's main process and the forwarder's. */
    pids: [firefox.child.pid, forwarder.child.pid],
    profileDir,
    console: consoleLines,
    output: tail,
    openedAt: null,
    async open(url) {
      this.openedAt = Date.now();
      await page.goto(url, { waitUntil: 'load' });
    },
    close,
  };
}

module.exports = { launchFirefoxParticipant, firefoxBinary, firefoxVersion, firefoxPrefs };
