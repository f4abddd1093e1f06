'use strict';
// The load generator (crates/loadgen, binary sluice-loadgen) as a child process: fills
// rooms PREFIX-0.. with synthetic publishers/subscribers for a fixed duration and prints
// one JSON summary on exit (--json). Registered with the cleanup registry.

const fs = require('node:fs');
const path = require('node:path');

const { spawnTracked } = require('./child');
const cleanup = require('./cleanup');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
/** Bytes of stdout/stderr kept: the JSON summary is one short line. */
const MAX_OUTPUT_BYTES = 1 << 20;
/** SIGTERM-to-SIGKILL grace when stopping early. */
const STOP_GRACE_MS = 3000;

/**
 * LOADGEN_BIN, else next to the server binary (SLUICE_BIN's dir), else
 * target/release/sluice-loadgen (CARGO_TARGET_DIR honoured). Not built here: a release
 * build of the loadgen takes minutes (`cargo build --release -p sluice-loadgen`).
 */
function loadgenBinary() {
  if (process.env.LOADGEN_BIN) {
    const bin = path.resolve(process.env.LOADGEN_BIN);
    if (!fs.existsSync(bin)) throw new Error(`LOADGEN_BIN=${bin} does not exist`);
    return bin;
  }
  const candidates = [];
  if (process.env.SLUICE_BIN) candidates.push(path.join(path.dirname(path.resolve(process.env.SLUICE_BIN)), 'sluice-loadgen'));
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.CARGO_TARGET_DIR) : path.join(REPO_ROOT, 'target');
  candidates.push(path.join(targetDir, 'release', 'sluice-loadgen'));
  for (const candidate of candidates) if (fs.existsSync(candidate)) return candidate;
  throw new Error(
    `load generator not found (tried ${candidates.join(', ')}): build it with \`cargo build --release -p sluice-loadgen\` or set LOADGEN_BIN`,
  );
}

/**
 * The last line of `stdout` that parses as a JSON object, or null. The binary prints
 * exactly one with --json; taking the last keeps working if progress lines ever precede it.
 */
function parseSummary(stdout) {
  const lines = String(stdout || '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    try {
      const value = JSON.parse(lines[i]);
      if (value && typeof value === 'object' && !Array.isArray(value)) return value;
    } catch {
      // Not the summary: keep looking.
    }
  }
  return null;
}

/**
 * Starts `sluice-loadgen --rooms 1` against `wsUrl`. The room it fills is `${roomPrefix}-0`;
 * its participants are named pub-0-<i> (i < publishers) and sub-0-<i> (after them).
 * Returns { pid, room, argv, exited (Promise of { code, signal, json, stdout, stderr }),
 * running(), stop() }.
 */
function startLoadgen({ wsUrl, roomPrefix, publishers, subscribers, durationS, extraArgs = [] }) {
  const bin = loadgenBinary();
  const argv = [
    '--url', wsUrl,
    '--rooms', '1',
    '--room-prefix', roomPrefix,
    '--publishers-per-room', String(publishers),
    '--subscribers-per-room', String(subscribers),
    '--duration-s', String(durationS),
    '--json',
    ...extraArgs,
  ];
  const { child, exited: closed, exitInfo, terminate } = spawnTracked(bin, argv);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    if (stdout.length < MAX_OUTPUT_BYTES) stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    if (stderr.length < MAX_OUTPUT_BYTES) stderr += chunk;
  });
  const exited = closed.then((info) => {
    unregister();
    return { ...info, json: parseSummary(stdout), stdout, stderr };
  });
  const stop = async () => {
    await terminate(STOP_GRACE_MS);
    return exited;
  };
  const unregister = cleanup.register(`loadgen ${child.pid}`, stop);
  return {
    pid: child.pid,
    room: `${roomPrefix}-0`,
    argv: [bin, ...argv],
    exited,
    running: () => exitInfo() === null,
    stop,
  };
}

module.exports = { startLoadgen, loadgenBinary, parseSummary };
