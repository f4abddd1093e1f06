'use strict';
// Simulcast from real Chromium: the server asks every camera for three encodings
// (RIDs q, h, f: quarter, half and full resolution), Chromium sends them, and each
// subscriber gets the one that fits the tile it shows. A page that shrinks a tile to a
// thumbnail receives the quarter-resolution encoding from the next keyframe on, without
// its decoder stalling; another page showing the same camera large keeps a larger one;
// the thumbnail grown back gets the large encoding again.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor, videoFramesFrom } = require('./lib/poll');

const TEST_TIMEOUT_MS = 180000;

after(() => cleanup.runAll());

/** The height of the video `snap`'s page decodes from participant `from`. */
function heightFrom(snap, from) {
  const video = (snap.stats.inbound || []).find((s) => s.kind === 'video' && s.participantId === from);
  return video ? video.frameHeight || 0 : 0;
}

/** Resizes the tile that `page` shows `id` in (null: back to the grid's size). */
async function setTileWidth(page, id, width) {
  await page.evaluate(
    ([pid, w]) => {
      const tile = document.querySelector(`.tile[data-participant="${pid}"]`);
      tile.style.width = w === null ? '' : `${w}px`;
    },
    [id, width],
  );
}

test('each subscriber gets the simulcast encoding that fits its tile, switched without a stall', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ dtlsRole: 'auto' });
  const room = `simulcast-${crypto.randomBytes(3).toString('hex')}`;
  const names = ['Ada', 'Bo', 'Cy'];
  const pages = [];
  for (const name of names) pages.push(await launchParticipant(name));
  await Promise.all(pages.map((p, i) => p.open(`${server.url}/?room=${room}&name=${names[i]}&autojoin=1`)));
  const [ada, bo, cy] = pages;

  // Everyone decodes everyone; Ada sends at least two encodings, named by our RIDs.
  const { snaps } = await waitFor('a room of three decoding each other, Ada sending simulcast', async () => {
    const snaps = await Promise.all(pages.map((p) => p.page.evaluate(pageSnapshot)));
    const ids = snaps.map((s) => s.participantId);
    const decoding = snaps.every((s, i) => ids.every((id, j) => i === j || videoFramesFrom(s, id) >= 10));
    const sending = (snaps[0].stats.outbound || []).filter((o) => o.kind === 'video' && o.framesEncoded > 0);
    const rids = sending.map((o) => o.rid).sort();
    const ok = decoding && rids.length >= 2 && rids.every((r) => ['f', 'h', 'q'].includes(r));
    return { ok, snaps, detail: { ids, rids, states: snaps.map((s) => s.state) } };
  }, 60000);
  const adaId = snaps[0].participantId;
  // A quarter of the 720p camera; Chromium may scale every encoding down further when the
  // machine is busy (three browsers on two cores), never up.
  const QUARTER = 180 + 8;

  // Both tiles are a grid cell (about 255 x 190 px): at least the half encoding.
  await waitFor('Bo and Cy receive a large encoding of Ada', async () => {
    const [b, c] = await Promise.all([bo.page.evaluate(pageSnapshot), cy.page.evaluate(pageSnapshot)]);
    const heights = { bo: heightFrom(b, adaId), cy: heightFrom(c, adaId) };
    return { ok: heights.bo > QUARTER && heights.cy > QUARTER, detail: heights };
  });

  // Bo shows Ada as a thumbnail: the quarter encoding from the next keyframe on.
  await setTileWidth(bo.page, adaId, 160);
  const small = await waitFor("Bo receives Ada's quarter encoding", async () => {
    const [b, c] = await Promise.all([bo.page.evaluate(pageSnapshot), cy.page.evaluate(pageSnapshot)]);
    const hb = heightFrom(b, adaId);
    const hc = heightFrom(c, adaId);
    const sizes = b.events.filter((e) => e.type === 'video_size');
    return { ok: hb > 0 && hb <= QUARTER, b, detail: { bo: hb, cy: hc, sizes } };
  });
  // Cy, whose tile did not change, still gets a larger encoding.
  const cySnap = await cy.page.evaluate(pageSnapshot);
  assert.ok(heightFrom(cySnap, adaId) > heightFrom(small.b, adaId), 'Cy keeps a larger encoding than the thumbnail');

  // Bo's decoder keeps going across the switch (no stall on the new encoding).
  const framesAfterSwitch = videoFramesFrom(small.b, adaId);
  await waitFor("Bo keeps decoding Ada's quarter encoding", async () => {
    const b = await bo.page.evaluate(pageSnapshot);
    const frames = videoFramesFrom(b, adaId);
    return { ok: frames >= framesAfterSwitch + 30, detail: { frames, framesAfterSwitch } };
  });

  // Grown back: a larger encoding again.
  await setTileWidth(bo.page, adaId, null);
  await waitFor("Bo receives a larger encoding of Ada again", async () => {
    const b = await bo.page.evaluate(pageSnapshot);
    const hb = heightFrom(b, adaId);
    return { ok: hb > QUARTER, detail: { bo: hb } };
  });

  const b = await bo.page.evaluate(pageSnapshot);
  const sizes = b.events.filter((e) => e.type === 'video_size' && e.participantId === adaId);
  assert.ok(sizes.length >= 2, `the page reported Ada's tile sizes (${JSON.stringify(sizes)})`);
});
