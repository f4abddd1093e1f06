'use strict';
// Leave, then Join again, in the same page, three times in a row: after every Join both
// participants decode each other's video again and the page that stayed shows exactly
// one tile for the rejoiner (no ghost of an earlier session). Then a "ghost": a raw
// WebSocket client that joins and never answers its offer is ended by the server with
// `bye {reason: "answer_timeout"}` and disappears from the page's participant list.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor, videoFramesFrom } = require('./lib/poll');

const TEST_TIMEOUT_MS = 180000;

after(() => cleanup.runAll());

/** Waits until `a` and `b` each decode newly arriving video from the other. */
async function bothDecode(a, b, label) {
  const baseline = new Map();
  return waitFor(`${label}: both pages decoding each other`, async () => {
    const [sa, sb] = await Promise.all([a.page.evaluate(pageSnapshot), b.page.evaluate(pageSnapshot)]);
    if (sa.state !== 'joined' || sb.state !== 'joined') return { detail: { a: sa.state, b: sb.state } };
    const ab = videoFramesFrom(sa, sb.participantId);
    const ba = videoFramesFrom(sb, sa.participantId);
    const key = `${sa.participantId}/${sb.participantId}`;
    if (!baseline.has(key)) baseline.set(key, { ab, ba });
    const base = baseline.get(key);
    // Frames decoded and still growing since the first look: media flows both ways now.
    const ok = ab > base.ab && ba > base.ba && ab >= 5 && ba >= 5;
    return { ok, detail: { ab, ba, a: sa.participantId, b: sb.participantId, tilesA: sa.tiles, tilesB: sb.tiles }, sa, sb };
  });
}

test('a page that leaves and joins again three times is back in media each time, with no ghost', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ dtlsRole: 'auto' });
  const room = `rejoin-${crypto.randomBytes(3).toString('hex')}`;
  const a = await launchParticipant('Ada');
  const b = await launchParticipant('Bo');
  const url = (name) => `${server.url}/?room=${room}&name=${name}&autojoin=1`;
  await Promise.all([a.open(url('Ada')), b.open(url('Bo'))]);
  await bothDecode(a, b, 'first join');

  const seen = new Set();
  for (let round = 1; round <= 3; round += 1) {
    const before = await a.page.evaluate(pageSnapshot);
    seen.add(before.participantId);
    // The Leave button, then the Join button of the same page.
    await a.page.click('#leave');
    await waitFor(`round ${round}: Bo sees Ada leave`, async () => {
      const sb = await b.page.evaluate(pageSnapshot);
      const ghost = sb.participants.some(([id]) => id === before.participantId) || sb.tiles.includes(before.participantId);
      return { ok: !ghost, detail: { participants: sb.participants, tiles: sb.tiles } };
    });
    await a.page.click('#join');
    const { sa, sb } = await bothDecode(a, b, `round ${round}`);
    assert.ok(!seen.has(sa.participantId), `round ${round}: a new session id (${sa.participantId})`);
    const remoteTiles = sb.tiles.filter((t) => t !== 'self');
    assert.deepEqual(remoteTiles, [sa.participantId], `round ${round}: Bo shows Ada's new session only`);
    const errors = sa.events.filter((e) => e.type === 'offer_failed');
    assert.deepEqual(errors, [], `round ${round}: every offer applied`);
  }
});

test('a participant that never answers its offer is ended with answer_timeout and leaves the page', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ dtlsRole: 'auto', signaling: { answer_timeout_ms: 2000 } });
  const room = `ghost-${crypto.randomBytes(3).toString('hex')}`;
  const a = await launchParticipant('Ada');
  await a.open(`${server.url}/?room=${room}&name=Ada&autojoin=1`);
  await waitFor('Ada joined', async () => {
    const s = await a.page.evaluate(pageSnapshot);
    return { ok: s.state === 'joined', detail: s.state };
  });

  // The ghost: a raw WebSocket (from a second tab, so no client library is needed) that
  // joins and then ignores every offer.
  const ghostTab = await a.context.newPage();
  await ghostTab.goto(`${server.url}/healthz`);
  await ghostTab.evaluate(
    ({ url, room }) =>
      new Promise((resolve, reject) => {
        window.received = [];
        const ws = new WebSocket(url);
        ws.onmessage = (event) => window.received.push(JSON.parse(event.data));
        ws.onopen = () => {
          ws.send(JSON.stringify({ type: 'join', room, name: 'Ghost' }));
          resolve();
        };
        ws.onerror = () => reject(new Error('ghost socket failed'));
        window.ghost = ws;
      }),
    { url: `${server.url.replace('http', 'ws')}/ws`, room },
  );
  const messages = () => ghostTab.evaluate(() => window.received.slice());
  const joined = await waitFor('the ghost joined and got an offer', async () => {
    const received = await messages();
    const j = received.find((m) => m.type === 'joined');
    return { ok: Boolean(j) && received.some((m) => m.type === 'offer'), detail: received.map((m) => m.type), id: j && j.participant_id };
  });
  await waitFor('Ada sees the ghost', async () => {
    const s = await a.page.evaluate(pageSnapshot);
    return { ok: s.participants.some(([id]) => id === joined.id), detail: s.participants };
  });
  // It never answers: the server ends it, says why, and Ada's page lets it go.
  const bye = await waitFor('bye to the ghost', async () => {
    const received = await messages();
    const m = received.find((x) => x.type === 'bye');
    return { ok: Boolean(m), detail: received.map((x) => x.type), m };
  });
  assert.equal(bye.m.reason, 'answer_timeout');
  await waitFor('Ada no longer lists the ghost', async () => {
    const s = await a.page.evaluate(pageSnapshot);
    const present = s.participants.some(([id]) => id === joined.id) || s.tiles.includes(joined.id);
    return { ok: !present, detail: { participants: s.participants, tiles: s.tiles } };
  });
  await ghostTab.close();
});
