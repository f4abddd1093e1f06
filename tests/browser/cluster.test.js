'use strict';
// Cluster mode with real browsers (docs/cluster.md): a real redis-server on a free port and
// three `sluice` nodes on their own loopback ports.
//  1. Two Chromium pages, each served by a different node, share one call: the room lives
//     on one node, the other bridges its page's signalling there.
//  2. The room's node is killed (SIGKILL): both pages reconnect by themselves (no reload)
//     through the nodes that served them, the room is placed anew, and both decode each
//     other's video again within 10 s of the kill.
// Skipped (loudly) when redis-server is absent, unless SLUICE_REQUIRE_REDIS is set.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');

const cleanup = require('./lib/cleanup');
const { spawnTracked } = require('./lib/child');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { freeTcpPort } = require('./lib/ports');
const { waitFor, videoFramesFrom } = require('./lib/poll');

const TEST_TIMEOUT_MS = 180000;
/** The bound: back in media this long after the room's node died. */
const RECOVERY_BOUND_MS = 10000;

after(() => cleanup.runAll());

function hasRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.SLUICE_REQUIRE_REDIS) throw new Error('SLUICE_REQUIRE_REDIS is set but redis-server is not installed');
    console.error('SKIPPED: redis-server is not installed (apt-get install redis-server)');
    return false;
  }
}

const redisAvailable = hasRedis();

async function startRedis() {
  const port = await freeTcpPort();
  const { terminate } = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  cleanup.register(`redis ${port}`, () => terminate(2000));
  const cli = (...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).trim();
  await waitFor('redis answers PING', async () => {
    try {
      return { ok: cli('PING') === 'PONG' };
    } catch (error) {
      return { ok: false, detail: error.message };
    }
  });
  return { url: `redis://127.0.0.1:${port}`, cli };
}

async function startCluster(ids) {
  const redis = await startRedis();
  const nodes = [];
  for (const nodeId of ids) nodes.push(await startServer({ cluster: { redisUrl: redis.url, nodeId } }));
  await waitFor('every node sees the others', async () => {
    const counts = await Promise.all(nodes.map(async (n) => {
      const text = (await n.metrics()) || '';
      const line = text.split('\n').find((l) => l.startsWith('sluice_cluster_nodes '));
      return line ? Number(line.split(' ')[1]) : 0;
    }));
    return { ok: counts.every((c) => c === ids.length), detail: counts };
  });
  // Redis started empty: rooms are placed once the settling period is over.
  await waitFor('the cluster settled', async () => {
    const epoch = redis.cli('EXISTS', 'sluice:epoch');
    const settling = redis.cli('EXISTS', 'sluice:settling');
    return { ok: epoch === '1' && settling === '0', detail: { epoch, settling } };
  });
  return { redis, nodes };
}

/** Waits until `a` and `b` each decode video from the other that keeps arriving. */
async function bothDecode(a, b, label, timeoutMs) {
  const baseline = new Map();
  return waitFor(`${label}: both pages decoding each other`, async () => {
    const [sa, sb] = await Promise.all([a.page.evaluate(pageSnapshot), b.page.evaluate(pageSnapshot)]);
    if (sa.state !== 'joined' || sb.state !== 'joined') return { detail: { a: sa.state, b: sb.state, ea: sa.error, eb: sb.error } };
    const ab = videoFramesFrom(sa, sb.participantId);
    const ba = videoFramesFrom(sb, sa.participantId);
    const key = `${sa.participantId}/${sb.participantId}`;
    if (!baseline.has(key)) baseline.set(key, { ab, ba });
    const base = baseline.get(key);
    const ok = ab > base.ab && ba > base.ba && ab >= 5 && ba >= 5;
    return { ok, detail: { ab, ba }, sa, sb };
  }, timeoutMs);
}

test('two Chromium pages served by two different nodes share one call', { timeout: TEST_TIMEOUT_MS, skip: !redisAvailable }, async () => {
  const { redis, nodes } = await startCluster(['b1', 'b2', 'b3']);
  const room = `cluster-${crypto.randomBytes(3).toString('hex')}`;
  const a = await launchParticipant('Ada');
  const b = await launchParticipant('Bo');
  await Promise.all([
    a.open(`${nodes[0].url}/?room=${room}&name=Ada&autojoin=1`),
    b.open(`${nodes[1].url}/?room=${room}&name=Bo&autojoin=1`),
  ]);
  await bothDecode(a, b, 'through two nodes');
  const owner = redis.cli('GET', `sluice:room:${room}`);
  assert.ok(['b1', 'b2', 'b3'].includes(owner), `room lease names a node (${owner})`);
});

test('when the room\'s node is killed, both pages reconnect by themselves and are back in media within 10 s', { timeout: TEST_TIMEOUT_MS, skip: !redisAvailable }, async () => {
  const { redis, nodes } = await startCluster(['k1', 'k2', 'k3']);
  const room = `phoenix-${crypto.randomBytes(3).toString('hex')}`;
  // The room goes to k3, so that the pages (served by k1 and k2) are both bridged to it
  // and their reconnects reach a live node, as behind a load balancer.
  const a = await launchParticipant('Ada');
  const b = await launchParticipant('Bo');
  redis.cli('SET', `sluice:room:${room}`, 'k3', 'PX', '3000');
  await Promise.all([
    a.open(`${nodes[0].url}/?room=${room}&name=Ada&autojoin=1`),
    b.open(`${nodes[1].url}/?room=${room}&name=Bo&autojoin=1`),
  ]);
  await bothDecode(a, b, 'before the kill');
  assert.equal(redis.cli('GET', `sluice:room:${room}`), 'k3');

  process.kill(nodes[2].pid, 'SIGKILL');
  const killedAt = Date.now();
  const after = await bothDecode(a, b, 'after the kill', RECOVERY_BOUND_MS + 5000);
  const recoveryMs = Date.now() - killedAt;
  console.log(`media back ${recoveryMs} ms after kill -9 (poll every 250 ms)`);
  assert.ok(recoveryMs <= RECOVERY_BOUND_MS, `back in media after ${recoveryMs} ms`);
  assert.ok(after.sa.events.some((e) => e.type === 'reconnect_scheduled'), 'the page reconnected by itself');
  const moved = redis.cli('GET', `sluice:room:${room}`);
  assert.ok(moved === 'k1' || moved === 'k2', `the room moved to a live node (${moved})`);
});
