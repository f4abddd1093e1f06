'use strict';
// One impaired participant's network, arranged as a deployment would see it: a network
// namespace joined to the host by a veth pair in a private /30, with `tbf` rate limits on
// both ends (the kernel here has no netem; loss and delay come from the userspace relay,
// lib/relay.js, listening on the host end). Needs root. Everything created here is
// registered with lib/cleanup.js and removed on every path (end, failure, signal, exit).

const crypto = require('node:crypto');
const fs = require('node:fs');
const { execFileSync, spawnSync } = require('node:child_process');

const cleanup = require('./cleanup');

/** Namespaces are named PREFIX-<our pid>-<random>, so stale ones of dead runs can be swept. */
const NETNS_PREFIX = 'sluice-imp';
/** The /30s are taken from this private /16 (RFC 1918), first one not in use on the host. */
const SUBNET_BASE = [10, 231];
/** tbf bucket and queue: a home router's few kilobytes and ~100 ms of queue. */
const TBF_BURST = '4kb';
const TBF_LATENCY = '100ms';

class NetnsUnavailable extends Error {}

function run(args, { ns } = {}) {
  const argv = ns ? ['netns', 'exec', ns, ...args] : args;
  const [cmd, ...rest] = ns ? ['ip', ...argv] : argv;
  try {
    return execFileSync(cmd, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 });
  } catch (error) {
    const stderr = error.stderr ? String(error.stderr).trim() : error.message;
    throw new Error(`\`${[cmd, ...rest].join(' ')}\` failed: ${stderr}`);
  }
}

/**
 * Throws NetnsUnavailable with the reason when this process cannot create namespaces
 * (not root, or `ip`/`tc` missing). Impairment tests need root: CI runs as root.
 */
function requireNetnsSupport() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new NetnsUnavailable(
      'impairment tests need root (network namespaces, veth, tc): run as root, e.g. `sudo node --test tests/browser/`',
    );
  }
  for (const tool of ['ip', 'tc']) {
    if (spawnSync(tool, ['-V'], { stdio: 'ignore' }).error) {
      throw new NetnsUnavailable(`impairment tests need \`${tool}\` (Debian package iproute2)`);
    }
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/** Deletes namespaces left behind by runs whose process is gone (e.g. killed with SIGKILL). */
function sweepStale() {
  let names = [];
  try {
    names = run(['ip', 'netns', 'list'])
      .split('\n')
      .map((line) => line.split(' ')[0])
      .filter(Boolean);
  } catch {
    return;
  }
  for (const name of names) {
    const match = name.match(new RegExp(`^${NETNS_PREFIX}-(\\d+)-`));
    if (match && !pidAlive(Number(match[1]))) cleanup.deleteNetns(name);
  }
}

/** A /30 of SUBNET_BASE that no address on the host uses yet: [hostAddr, nsAddr]. */
function pickSubnet() {
  const used = run(['ip', '-4', '-o', 'addr', 'show']);
  for (let attempt = 0; attempt < 64; attempt += 1) {
    const third = crypto.randomInt(0, 256);
    const fourth = crypto.randomInt(0, 64) * 4;
    const prefix = `${SUBNET_BASE.join('.')}.${third}.`;
    const host = `${prefix}${fourth + 1}`;
    const ns = `${prefix}${fourth + 2}`;
    if (!used.includes(` ${host}/`) && !used.includes(` ${ns}/`)) return [host, ns];
  }
  throw new Error(`no free /30 in ${SUBNET_BASE.join('.')}.0.0/16`);
}

/**
 * Creates the namespace, veth pair and shaping. Options: { upRateKbit, downRateKbit }
 * (either may be null for no limit), `defaultRoute` (a default route via the host end:
 * Firefox gathers no ICE candidate at all without one). Returns { name, hostAddr, nsAddr, hostIf, nsIf,
 * chromiumWrapper(binary) -> path, teardown() }.
 */
function createImpairedNetwork({ upRateKbit = null, downRateKbit = null, defaultRoute = false } = {}) {
  requireNetnsSupport();
  sweepStale();
  const tag = crypto.randomBytes(3).toString('hex');
  const name = `${NETNS_PREFIX}-${process.pid}-${tag}`;
  const hostIf = `slh${tag}`;
  const nsIf = `sln${tag}`;
  const [hostAddr, nsAddr] = pickSubnet();

  run(['ip', 'netns', 'add', name]);
  cleanup.trackNetns(name);
  let unregister = () => {};
  const teardown = () => {
    // Delete the host end first: that is synchronous and takes the pair with it, whereas
    // the kernel removes a namespace's devices lazily after `ip netns del` returns.
    spawnSync('ip', ['link', 'del', hostIf], { stdio: 'ignore' });
    cleanup.deleteNetns(name);
    unregister();
  };
  unregister = cleanup.register(`netns ${name}`, async () => teardown());
  try {
    run(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name]);
    run(['ip', 'addr', 'add', `${hostAddr}/30`, 'dev', hostIf]);
    run(['ip', 'link', 'set', hostIf, 'up']);
    run(['ip', 'link', 'set', 'lo', 'up'], { ns: name });
    run(['ip', 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf], { ns: name });
    run(['ip', 'link', 'set', nsIf, 'up'], { ns: name });
    // By default no default route: nothing beyond the /30 is reachable from the namespace.
    // Chromium still gathers the veth address as a host candidate (checked with Debian's
    // Chromium 148); Firefox ESR 153 gathers nothing without a default route, so its
    // namespace gets one via the host end (the tests themselves only use the /30).
    if (defaultRoute) run(['ip', 'route', 'add', 'default', 'via', hostAddr], { ns: name });
    if (upRateKbit) {
      run(['tc', 'qdisc', 'add', 'dev', nsIf, 'root', 'tbf', 'rate', `${upRateKbit}kbit`, 'burst', TBF_BURST, 'latency', TBF_LATENCY], {
        ns: name,
      });
    }
    if (downRateKbit) {
      run(['tc', 'qdisc', 'add', 'dev', hostIf, 'root', 'tbf', 'rate', `${downRateKbit}kbit`, 'burst', '16kb', 'latency', TBF_LATENCY]);
    }
  } catch (error) {
    teardown();
    throw error;
  }

  return {
    name,
    hostAddr,
    nsAddr,
    hostIf,
    nsIf,
    upRateKbit,
    downRateKbit,
    /** An executable that starts `binary` (with all its arguments) inside the namespace. */
    chromiumWrapper(binary, dir) {
      const wrapper = `${dir}/chromium-in-${name}.sh`;
      fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${name} ${binary} "$@"\n`, { mode: 0o755 });
      return wrapper;
    },
    teardown,
  };
}

/** Names of namespaces this module would create (for tests that check teardown). */
function listOurNamespaces() {
  try {
    return run(['ip', 'netns', 'list'])
      .split('\n')
      .map((line) => line.split(' ')[0])
      .filter((n) => n.startsWith(`${NETNS_PREFIX}-${process.pid}-`));
  } catch {
    return [];
  }
}

module.exports = { createImpairedNetwork, requireNetnsSupport, listOurNamespaces, NetnsUnavailable, NETNS_PREFIX };
