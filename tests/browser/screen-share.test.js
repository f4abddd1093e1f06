'use strict';
// Screen share and selective subscription with real Chromium. Four participants in a
// call; one clicks "Share screen" (getDisplayMedia: headless Chromium with
// --use-fake-ui-for-media-stream and --use-fake-device-for-media-stream hands out a fake
// screen, so the page's own button path runs unchanged). Everyone else decodes her
// camera and her screen, each counted per track from getStats. A fifth page that
// publishes nothing (no camera, no microphone) joins and decodes everything, and none of
// the four is offered anything for it. Then sharing stops: the screen's tile goes and its
// m-line turns inactive in every other page's remote description. Last, the viewer's
// window shrinks: the cameras out of view are unsubscribed, and come back when in view.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor } = require('./lib/poll');

const TEST_TIMEOUT_MS = 120000;
/** Frames that prove a track decodes (a few seconds at the fake devices' rates). */
const FRAMES = 10;

after(() => cleanup.runAll());

/** Video frames `snap`'s page decoded of `source` from the stream `from`. */
function framesOf(snap, from, source) {
  return (snap.stats.inbound || [])
    .filter((s) => s.kind === 'video' && s.participantId === from && s.source === source)
    .reduce((sum, s) => sum + (s.framesDecoded || 0), 0);
}

function offers(snap) {
  return snap.events.filter((e) => e.type === 'offer').length;
}

async function snapshots(pages) {
  return Promise.all(pages.map((p) => p.page.evaluate(pageSnapshot)));
}

test('a shared screen reaches everyone, and a viewer joining costs nobody an offer', { timeout: TEST_TIMEOUT_MS }, async () => {
  // one encoding per camera: five Chromium on two cores
  const server = await startServer({ dtlsRole: 'auto', media: { simulcast: false } });
  const room = `screen-${crypto.randomBytes(3).toString('hex')}`;
  const names = ['Ada', 'Bo', 'Cy', 'Di'];
  const pages = await Promise.all(names.map((name) => launchParticipant(name)));
  // room for every tile in view: the page unsubscribes cameras scrolled out of it
  await Promise.all(pages.map((p) => p.page.setViewportSize({ width: 1280, height: 1000 })));
  await Promise.all(pages.map((p, i) => p.open(`${server.url}/?room=${room}&name=${names[i]}&autojoin=1`)));
  const [ada] = pages;

  const { snaps } = await waitFor('four participants decoding each other\'s cameras', async () => {
    const snaps = await snapshots(pages);
    const ids = snaps.map((s) => s.participantId);
    const ok = ids.every(Boolean) && snaps.every((s, i) => ids.every((id, j) => i === j || framesOf(s, id, 'camera') >= FRAMES));
    return { ok, snaps, detail: { ids, states: snaps.map((s) => s.state) } };
  }, 45000);
  const ids = snaps.map((s) => s.participantId);
  const screenId = `${ids[0]}-screen`;

  // Ada shares her screen with the page's own button.
  await ada.page.click('#share-screen');
  const shared = await waitFor('Bo, Cy and Di decoding Ada\'s screen and camera', async () => {
    const snaps = await snapshots(pages);
    const frames = snaps.slice(1).map((s) => ({ screen: framesOf(s, screenId, 'screen'), camera: framesOf(s, ids[0], 'camera') }));
    const attached = snaps[0].events.some((e) => e.type === 'screen_attached');
    const ok = attached && frames.every((f) => f.screen >= FRAMES && f.camera >= FRAMES);
    return { ok, snaps, detail: { attached, frames, error: snaps[0].error, events: snaps[0].events.slice(-5) } };
  });
  for (const snap of shared.snaps.slice(1)) {
    assert.ok(snap.tiles.includes(screenId), `a tile of its own for the screen (${snap.tiles})`);
    assert.ok(snap.tiles.includes(ids[0]), 'and Ada\'s camera tile beside it');
  }
  // the screen is one more m-line, sent by the server, in each of the others' offers
  const before = shared.snaps.map(offers);

  // A viewer that publishes nothing joins: it receives everything, nobody is re-offered.
  const [eve] = [await launchParticipant('Eve')];
  await eve.page.setViewportSize({ width: 1280, height: 1000 });
  await eve.open(`${server.url}/?room=${room}&name=Eve&autojoin=1&audio=0&video=0`);
  const watched = await waitFor('the viewer decoding every camera and the screen, everyone seeing it join', async () => {
    const [e, ...rest] = await snapshots([eve, ...pages]);
    const decoded = ids.map((id) => framesOf(e, id, 'camera'));
    const screen = framesOf(e, screenId, 'screen');
    const seen = rest.every((s) => s.events.some((ev) => ev.type === 'participant_joined' && ev.id === e.participantId));
    const ok = Boolean(e.participantId) && seen && screen >= FRAMES && decoded.every((n) => n >= FRAMES);
    return { ok, rest, detail: { decoded, screen, seen, state: e.state, sending: (e.stats.outbound || []).length } };
  });
  // By now a re-offer (sent 100 ms after a change) would long have arrived: the viewer's
  // media flowed for seconds.
  assert.deepEqual(watched.rest.map(offers), before, 'offers per page before and after the viewer joined');
  const eveSnap = await eve.page.evaluate(pageSnapshot);
  assert.equal((eveSnap.stats.outbound || []).filter((o) => (o.packetsSent || 0) > 0).length, 0, 'the viewer sends no media');

  // Sharing stops: the screen's tile goes, its m-line turns inactive (kept for reuse).
  await ada.page.click('#share-screen');
  await waitFor('the screen gone from every other page', async () => {
    const snaps = await snapshots([...pages.slice(1), eve]);
    const left = snaps.map((s) => ({
      tile: s.tiles.includes(screenId),
      lines: s.mlines.filter((m) => m.msid === screenId && m.direction !== 'inactive').length,
      unpublished: s.events.some((e) => e.type === 'track_unpublished' && e.trackId === screenId),
    }));
    return { ok: left.every((l) => !l.tile && l.lines === 0 && l.unpublished), detail: left };
  });
  const after = await snapshots(pages.slice(1));
  for (const snap of after) {
    assert.ok(framesOf(snap, ids[0], 'camera') >= FRAMES, 'Ada\'s camera still there');
  }

  // The viewer's window shrinks to two columns and one row of tiles: the page
  // unsubscribes the cameras out of view (their m-lines turn inactive), and subscribes
  // them again when they are back in view.
  await eve.page.setViewportSize({ width: 600, height: 300 });
  const hidden = await waitFor('the viewer receiving only the cameras in view', async () => {
    const layout = await eve.page.evaluate(() => ({
      height: window.innerHeight,
      tiles: [...document.querySelectorAll('.tile')].map((t) => ({ id: t.dataset.participant, top: t.getBoundingClientRect().top })),
    }));
    const out = layout.tiles.filter((t) => ids.includes(t.id) && t.top >= layout.height).map((t) => t.id);
    const snap = await eve.page.evaluate(pageSnapshot);
    const sent = (id) => snap.mlines.some((m) => m.kind === 'video' && m.msid === id && m.direction === 'sendonly');
    const inView = ids.filter((id) => !out.includes(id));
    const ok = out.length > 0 && out.every((id) => !sent(id)) && inView.every(sent);
    return { ok, out, snap, detail: { out, inView, layout, mlines: snap.mlines } };
  });
  await eve.page.setViewportSize({ width: 1280, height: 1000 });
  await waitFor('the cameras back in view decoding again', async () => {
    const snap = await eve.page.evaluate(pageSnapshot);
    const frames = hidden.out.map((id) => ({ id, was: framesOf(hidden.snap, id, 'camera'), now: framesOf(snap, id, 'camera') }));
    const sent = hidden.out.every((id) => snap.mlines.some((m) => m.kind === 'video' && m.msid === id && m.direction === 'sendonly'));
    return { ok: sent && frames.every((f) => f.now >= f.was + FRAMES), detail: { sent, frames } };
  });
});
