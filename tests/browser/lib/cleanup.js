'use strict';
// One place that knows everything a test started (server, browsers, temp dirs) so that it
// is torn down on every path: normal end, failed assertion, thrown error, SIGINT/SIGTERM.
//
// Async cleanups run in reverse order of registration (browsers before the server they talk
// to, temp dirs last). A synchronous "last resort" runs from process 'exit', where only
// synchronous work is possible: it SIGKILLs child processes that are still alive and removes
// temp dirs, so a crash or an abrupt exit leaves nothing behind either.

const fs = require('node:fs');
const { spawnSync } = require('node:child_process');

/** @type {{name: string, fn: () => Promise<void>}[]} */
const asyncCleanups = [];
/** Child process ids to SIGKILL on exit if they are still running. */
const pidsToKill = new Set();
/** Directories to remove on exit if they still exist. */
const dirsToRemove = new Set();
/** Network namespaces (created by lib/netns.js) to delete on exit if they still exist. */
const netnsToDelete = new Set();

/** Time one async cleanup may take before it is abandoned (the exit hook still kills). */
const CLEANUP_STEP_TIMEOUT_MS = 10000;

let signalHandlersInstalled = false;
let shuttingDown = false;
/** The signal that started a shutdown, or null. */
let interruptedBy = null;

function installSignalHandlers() {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      if (shuttingDown) {
        // Second signal: do not wait any more.
        lastResort();
        process.exit(130);
      }
      shuttingDown = true;
      interruptedBy = signal;
      process.stderr.write(`\n[browser-tests] ${signal}: cleaning up\n`);
      runAll().finally(() => process.exit(130));
    });
  }
  process.on('exit', lastResort);
}

/** Registers an async cleanup; returns a function that unregisters it. */
function register(name, fn) {
  installSignalHandlers();
  const entry = { name, fn };
  asyncCleanups.push(entry);
  return () => {
    const index = asyncCleanups.indexOf(entry);
    if (index >= 0) asyncCleanups.splice(index, 1);
  };
}

function trackPid(pid) {
  installSignalHandlers();
  if (pid) pidsToKill.add(pid);
}

function untrackPid(pid) {
  pidsToKill.delete(pid);
}

function trackDir(dir) {
  installSignalHandlers();
  dirsToRemove.add(dir);
}

function trackNetns(name) {
  installSignalHandlers();
  netnsToDelete.add(name);
}

/** Deletes a network namespace (and with it the veth pair it holds); idempotent, synchronous. */
function deleteNetns(name) {
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore', timeout: 5000 });
  netnsToDelete.delete(name);
}

function removeDir(dir) {
  try {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // Best effort: a browser may still be writing; the exit hook retries.
    return;
  }
  dirsToRemove.delete(dir);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs every registered async cleanup (newest first), never throwing. */
async function runAll() {
  while (asyncCleanups.length > 0) {
    const { name, fn } = asyncCleanups.pop();
    try {
      await withTimeout(Promise.resolve().then(fn), CLEANUP_STEP_TIMEOUT_MS, `cleanup ${name}`);
    } catch (error) {
      process.stderr.write(`[browser-tests] cleanup ${name} failed: ${error.message}\n`);
    }
  }
  lastResort();
}

function lastResort() {
  for (const pid of pidsToKill) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  pidsToKill.clear();
  for (const name of [...netnsToDelete]) deleteNetns(name);
  for (const dir of [...dirsToRemove]) removeDir(dir);
}

/** The signal (e.g. 'SIGINT') that interrupted the run, or null. */
function interrupted() {
  return interruptedBy;
}

module.exports = {
  interrupted,
  register,
  runAll,
  trackPid,
  untrackPid,
  trackDir,
  removeDir,
  trackNetns,
  deleteNetns,
  withTimeout,
};
