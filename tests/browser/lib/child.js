'use strict';
// A child process (server, relay, load generator) tracked by the cleanup registry until it
// exits, with the SIGTERM-then-SIGKILL stop every one of them needs.

const { spawn } = require('node:child_process');

const cleanup = require('./cleanup');

/**
 * Spawns `bin argv` with piped, UTF-8 stdout and stderr (`options` go to `spawn`).
 * Returns { child, exited, exitInfo(), terminate(graceMs) }: `exited` resolves with
 * { code, signal[, error] } once the process exited and its pipes closed (so everything
 * it printed has been read); `terminate` sends SIGTERM, SIGKILL after `graceMs`, and
 * resolves like `exited`.
 */
function spawnTracked(bin, argv, options = {}) {
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  cleanup.trackPid(child.pid);
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    const done = (info) => {
      if (exitInfo) return;
      exitInfo = info;
      cleanup.untrackPid(child.pid);
      resolve(info);
    };
    child.on('close', (code, signal) => done({ code, signal }));
    child.on('error', (error) => done({ code: null, signal: null, error: error.message }));
  });
  const terminate = async (graceMs) => {
    if (!exitInfo) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!exitInfo) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exitInfo;
  };
  return { child, exited, exitInfo: () => exitInfo, terminate };
}

module.exports = { spawnTracked };
