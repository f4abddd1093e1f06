'use strict';
// The demo page's automatic reconnection stays out of the way when it must: after the user's
// Leave, and after a final error (here `room_full`), the page stays left and schedules no
// rejoin. (That it does reconnect after an unexpected close is cluster.test.js.) The page
// schedules a rejoin synchronously when it handles the close or `bye`, so checking its event
// log right after that point is exact; no waiting window is needed.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor } = require('./lib/poll');

const TEST_TIMEOUT_MS = 120000;

after(() => cleanup.runAll());

test('the page does not reconnect after Leave, nor after a final error', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ limits: { participants_per_room: 1 } });
  const room = `final-${crypto.randomBytes(3).toString('hex')}`;
  const a = await launchParticipant('Ada');
  const b = await launchParticipant('Bo');
  await a.open(`${server.url}/?room=${room}&name=Ada&autojoin=1`);
  await waitFor('Ada joined', async () => {
    const s = await a.page.evaluate(pageSnapshot);
    return { ok: s.state === 'joined', detail: s.state };
  });

  // The room holds one: Bo is refused with room_full, a final error.
  await b.open(`${server.url}/?room=${room}&name=Bo&autojoin=1`);
  const refused = await waitFor('Bo told the room is full', async () => {
    const s = await b.page.evaluate(pageSnapshot);
    return { ok: s.events.some((e) => e.type === 'bye'), detail: s.events.map((e) => e.type), s };
  });
  assert.ok(refused.s.events.some((e) => e.type === 'error' && e.code === 'room_full'));
  assert.equal(refused.s.state, 'left');
  assert.ok(!refused.s.events.some((e) => e.type === 'reconnect_scheduled'), 'no rejoin after room_full');

  // Ada leaves with the button: left, and no rejoin.
  await a.page.click('#leave');
  const left = await a.page.evaluate(pageSnapshot);
  assert.equal(left.state, 'left');
  assert.ok(!left.events.some((e) => e.type === 'reconnect_scheduled'), 'no rejoin after Leave');
});
