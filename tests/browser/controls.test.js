'use strict';
// The demo page's controls as a person uses them: Ada turns her camera off and mutes her
// microphone, and Bo's page shows her tile with a placeholder (not her last frame) and as
// muted; she turns them back on and Bo decodes her video again. A third person joining the
// full room reads why in words. Screenshots of both pages go to a temporary directory
// (printed) to be looked at.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor, videoFramesFrom } = require('./lib/poll');

const TEST_TIMEOUT_MS = 120000;

after(() => cleanup.runAll());

/** The classes and quality hint of `page`'s tile for participant `id`. */
const tileOf = (page, id) =>
  page.evaluate((who) => {
    const el = document.querySelector(`.tile[data-participant="${who}"]`);
    return el ? { classes: [...el.classList], quality: el.dataset.quality || null } : null;
  }, id);

test('camera off and mute show as a placeholder and a muted label; a full room says so', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ dtlsRole: 'auto', limits: { participants_per_room: 2 } });
  const room = `controls-${crypto.randomBytes(3).toString('hex')}`;
  const shots = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-controls-'));
  const a = await launchParticipant('Ada');
  const b = await launchParticipant('Bo');
  const url = (name) => `${server.url}/?room=${room}&name=${name}&autojoin=1`;
  await Promise.all([a.open(url('Ada')), b.open(url('Bo'))]);
  const ids = await waitFor('both decoding', async () => {
    const [sa, sb] = await Promise.all([a.page.evaluate(pageSnapshot), b.page.evaluate(pageSnapshot)]);
    const ok = sa.state === 'joined' && sb.state === 'joined' && videoFramesFrom(sb, sa.participantId) > 10 && videoFramesFrom(sa, sb.participantId) > 10;
    return { ok, detail: { a: sa.state, b: sb.state }, ada: sa.participantId };
  });
  await waitFor("a quality hint on Bo's tile for Ada", async () => {
    const tile = await tileOf(b.page, ids.ada);
    return { ok: tile && ['good', 'fair', 'poor'].includes(tile.quality), detail: tile };
  });

  await a.page.click('#camera');
  await a.page.click('#mute-mic');
  await waitFor("Bo's page shows Ada's camera off and microphone muted", async () => {
    const tile = await tileOf(b.page, ids.ada);
    return { ok: tile && tile.classes.includes('camera-off') && tile.classes.includes('mic-off'), detail: tile };
  });
  await b.page.screenshot({ path: path.join(shots, 'bo-sees-ada-camera-off.png') });
  await a.page.screenshot({ path: path.join(shots, 'ada-camera-off.png') });

  await a.page.click('#camera');
  await a.page.click('#mute-mic');
  const before = videoFramesFrom(await b.page.evaluate(pageSnapshot), ids.ada);
  await waitFor("Bo decodes Ada's video again, tile unmarked", async () => {
    const tile = await tileOf(b.page, ids.ada);
    const frames = videoFramesFrom(await b.page.evaluate(pageSnapshot), ids.ada);
    const ok = tile && !tile.classes.includes('camera-off') && !tile.classes.includes('mic-off') && frames > before + 10;
    return { ok, detail: { tile, frames, before } };
  });

  const c = await launchParticipant('Cy');
  await c.open(url('Cy'));
  const error = await waitFor("Cy's page says the room is full", async () => {
    const s = await c.page.evaluate(pageSnapshot);
    return { ok: /room is full/i.test(s.error) && s.state !== 'joined', detail: { state: s.state, error: s.error } };
  });
  assert.match(error.detail.error, /room is full/i);
  await c.page.screenshot({ path: path.join(shots, 'cy-room-full.png') });
  process.stdout.write(`screenshots in ${shots}\n`);
});
