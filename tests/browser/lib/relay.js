'use strict';
// The netsim UDP relay (crates/netsim, binary sluice-netsim-relay) as a child process:
// listens where the impaired participant reaches the server, forwards to the server's
// media port with loss/delay per direction, prints JSON stats on exit.

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const { spawnTracked } = require('./child');
const cleanup = require('./cleanup');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
/** Time the relay gets to print `listening on`. */
const START_TIMEOUT_MS = 10000;
const STOP_GRACE_MS = 3000;

/**
 * The relay binary: SLUICE_RELAY_BIN, else next to the server binary (SLUICE_BIN's dir),
 * else target/release. When none exists it is built once with cargo (the CI builds only
 * the server; the relay crate is small and shares the server's dependencies).
 */
function relayBinary() {
  const candidates = [];
  if (process.env.SLUICE_RELAY_BIN) candidates.push(path.resolve(process.env.SLUICE_RELAY_BIN));
  if (process.env.SLUICE_BIN) candidates.push(path.join(path.dirname(path.resolve(process.env.SLUICE_BIN)), 'sluice-netsim-relay'));
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target');
  candidates.push(path.join(targetDir, 'release', 'sluice-netsim-relay'));
  for (const candidate of candidates) if (fs.existsSync(candidate)) return candidate;
  if (process.env.SLUICE_RELAY_BIN) throw new Error(`SLUICE_RELAY_BIN=${process.env.SLUICE_RELAY_BIN} does not exist`);
  process.stdout.write('[relay] sluice-netsim-relay not built: cargo build --release -p sluice-netsim --bin sluice-netsim-relay\n');
  const build = spawnSync('cargo', ['build', '--release', '--quiet', '-p', 'sluice-netsim', '--bin', 'sluice-netsim-relay'], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
  });
  const built = path.join(targetDir, 'release', 'sluice-netsim-relay');
  if (build.status !== 0 || !fs.existsSync(built)) throw new Error('could not build sluice-netsim-relay');
  return built;
}

/**
 * Starts a relay. `args` are the relay's impairment options (e.g. ['--loss', '0.15']).
 * Returns { listen, args, pid, stop() -> stats object | null, stderr() }.
 */
async function startRelay({ listen, upstream, args = [], seed = 1 }) {
  const bin = relayBinary();
  const argv = ['--listen', listen, '--upstream', upstream, '--seed', String(seed), ...args];
  const { child, exited, terminate } = spawnTracked(bin, argv);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    if (stdout.length < 1 << 20) stdout += chunk;
  });
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS);
    child.stderr.on('data', (chunk) => {
      if (stderr.length < 1 << 16) stderr += chunk;
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    exited.then((info) => {
      clearTimeout(timer);
      reject(new Error(`relay exited at start (${JSON.stringify(info)}): ${stderr}`));
    });
  });

  let stopped = null;
  const stop = () => {
    if (stopped) return stopped;
    stopped = (async () => {
      await terminate(STOP_GRACE_MS);
      unregister();
      try {
        return JSON.parse(stdout.trim().split('\n').pop());
      } catch {
        return null;
      }
    })();
    return stopped;
  };
  const unregister = cleanup.register(`relay ${child.pid}`, stop);
  try {
    await listening;
  } catch (error) {
    await stop();
    throw error;
  }
  return { listen, upstream, args: argv, pid: child.pid, stop, stderr: () => stderr };
}

module.exports = { startRelay, relayBinary };
