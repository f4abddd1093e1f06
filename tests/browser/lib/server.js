'use strict';
// Starts the `sluice` binary on free loopback ports with a generated config, waits for
// /healthz, keeps its log in memory (bounded) and stops it (SIGTERM, then SIGKILL).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const { spawnTracked } = require('./child');
const cleanup = require('./cleanup');
const { freeTcpPort, freeUdpPort } = require('./ports');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
/** Time the server gets to answer /healthz after spawning. */
const HEALTH_TIMEOUT_MS = 15000;
const HEALTH_POLL_INTERVAL_MS = 100;
/** Time between SIGTERM and SIGKILL when stopping. */
const STOP_GRACE_MS = 5000;
/** Log lines kept in memory; older ones are dropped (and counted). */
const MAX_LOG_LINES = 20000;

function serverBinary() {
  const fromEnv = process.env.SLUICE_BIN;
  const bin = fromEnv ? path.resolve(fromEnv) : path.join(REPO_ROOT, 'target', 'release', 'sluice');
  if (!fs.existsSync(bin)) {
    throw new Error(
      `server binary ${bin} not found: build it with \`cargo build --release -p sluice\` or set SLUICE_BIN`,
    );
  }
  return bin;
}

/**
 * YAML for one run. Only keys documented in docs/configuration.md. `httpHost` is the
 * address the page is served on (a veth address when a participant sits in a network
 * namespace), `mediaHost` the address media.listen binds (a veth address for Firefox,
 * which never pairs with a loopback candidate), `announce` the media.announce list, `dtls` extra dtls.* keys (e.g.
 * { max_datagram_size: 576, recovery: false }).
 */
function configYaml({ httpPort, mediaPort, dtlsRole, logLevel, httpHost = '127.0.0.1', mediaHost = '127.0.0.1', announce = ['127.0.0.1'], dtls = {}, signaling = {}, limits = {}, media = {}, cluster = null }) {
  const dtlsExtra = Object.entries(dtls).map(([key, value]) => `  ${key}: ${JSON.stringify(value)}`);
  const signalingKeys = Object.entries(signaling).map(([key, value]) => `  ${key}: ${JSON.stringify(value)}`);
  const limitKeys = Object.entries(limits).map(([key, value]) => `  ${key}: ${JSON.stringify(value)}`);
  const mediaKeys = Object.entries(media).map(([key, value]) => `  ${key}: ${JSON.stringify(value)}`);
  return [
    'http:',
    `  listen: "${httpHost}:${httpPort}"`,
    'media:',
    `  listen: "${mediaHost}:${mediaPort}"`,
    '  workers: 1',
    `  announce: [${announce.map((a) => JSON.stringify(a)).join(', ')}]`,
    ...mediaKeys,
    'dtls:',
    `  role: ${dtlsRole}`,
    ...dtlsExtra,
    ...(signalingKeys.length > 0 ? ['signaling:', ...signalingKeys] : []),
    ...(limitKeys.length > 0 ? ['limits:', ...limitKeys] : []),
    'log:',
    `  level: "${logLevel}"`,
    'shutdown:',
    '  grace_period_ms: 2000',
    // `cluster`: { redisUrl, nodeId } makes this server a cluster node (docs/cluster.md).
    ...(cluster
      // several nodes share this host: each relay socket on its own ephemeral port
      ? ['cluster:', `  redis_url: "${cluster.redisUrl}"`, `  node_id: "${cluster.nodeId}"`, `  internal_url: "http://${httpHost}:${httpPort}"`, `  relay_listen: "${httpHost}:0"`]
      : []),
    '',
  ].join('\n');
}

function httpGet(url, timeoutMs) {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => {
        if (body.length < 1 << 20) body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

class LogBuffer {
  constructor(maxLines) {
    this.maxLines = maxLines;
    this.lines = [];
    this.dropped = 0;
    this.partial = '';
  }

  push(chunk) {
    const text = this.partial + chunk;
    const parts = text.split('\n');
    this.partial = parts.pop();
    for (const line of parts) this.pushLine(line);
  }

  pushLine(line) {
    this.lines.push(line);
    if (this.lines.length > this.maxLines) {
      this.lines.shift();
      this.dropped += 1;
    }
  }

  text() {
    const head = this.dropped > 0 ? `[${this.dropped} earlier lines dropped]\n` : '';
    const tail = this.partial ? `${this.partial}\n` : '';
    return head + this.lines.join('\n') + (this.lines.length ? '\n' : '') + tail;
  }

  tail(count) {
    const all = this.partial ? [...this.lines, this.partial] : this.lines;
    return all.slice(-count).join('\n');
  }
}

/**
 * Starts a server. Returns { url, httpPort, mediaPort, log, exited, stop(), metrics() }.
 * Registered with the cleanup registry: it is stopped even if the caller forgets.
 */
async function startServer({ dtlsRole = 'auto', logLevel, httpHost = '127.0.0.1', mediaHost = '127.0.0.1', mediaPort: fixedMediaPort, announce, dtls, signaling, limits, media, cluster } = {}) {
  const bin = serverBinary();
  const httpPort = await freeTcpPort(httpHost);
  const mediaPort = fixedMediaPort || (await freeUdpPort(mediaHost));
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-browser-server-'));
  cleanup.trackDir(tmpDir);
  const configPath = path.join(tmpDir, 'sluice.yaml');
  const level = logLevel || process.env.SLUICE_LOG_LEVEL || 'sluice=debug,info';
  fs.writeFileSync(configPath, configYaml({ httpPort, mediaPort, dtlsRole, logLevel: level, httpHost, mediaHost, announce, dtls, signaling, limits, media, cluster }));

  const log = new LogBuffer(MAX_LOG_LINES);
  const { child, exited, exitInfo: exitState, terminate } = spawnTracked(bin, ['--config', configPath], {
    cwd: tmpDir,
    env: { ...process.env, RUST_LOG: '', NO_COLOR: '1' },
  });
  child.stdout.on('data', (chunk) => log.push(chunk));
  child.stderr.on('data', (chunk) => log.push(chunk));

  let stopped = null;
  const stop = () => {
    if (stopped) return stopped;
    stopped = (async () => {
      const exitInfo = await terminate(STOP_GRACE_MS);
      cleanup.removeDir(tmpDir);
      unregister();
      return exitInfo;
    })();
    return stopped;
  };
  const unregister = cleanup.register(`server ${child.pid}`, stop);

  const url = `http://${httpHost}:${httpPort}`;
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  let lastError = 'no answer yet';
  for (;;) {
    if (exitState()) {
      await stop();
      throw new Error(
        `server exited before /healthz answered (${JSON.stringify(exitState())}); log tail:\n${log.tail(40)}`,
      );
    }
    try {
      const { status, body } = await httpGet(`${url}/healthz`, 1000);
      if (status === 200) break;
      lastError = `status ${status}: ${body.slice(0, 200)}`;
    } catch (error) {
      lastError = error.message;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `server did not answer /healthz within ${HEALTH_TIMEOUT_MS} ms (${lastError}); log tail:\n${log.tail(40)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_INTERVAL_MS));
  }

  return {
    url,
    httpPort,
    mediaPort,
    dtlsRole,
    pid: child.pid,
    configPath,
    log,
    exited,
    get exitInfo() {
      return exitState();
    },
    stop,
    /** The /metrics text, or null when the server does not answer. */
    async metrics() {
      try {
        const { status, body } = await httpGet(`${url}/metrics`, 2000);
        return status === 200 ? body : null;
      } catch {
        return null;
      }
    },
  };
}

/** Lines of an OpenMetrics text whose family starts with one of `prefixes`, without comments. */
function pickMetrics(text, prefixes) {
  if (!text) return [];
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#') && prefixes.some((p) => line.startsWith(p)))
    .filter((line) => !/_bucket\{/.test(line));
}

module.exports = { startServer, serverBinary, configYaml, pickMetrics, httpGet, REPO_ROOT };
