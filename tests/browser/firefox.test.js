'use strict';
// Firefox ESR in calls with Chromium. Firefox runs in a network namespace of its own (see
// lib/firefox.js for why); the server listens and announces on the host end of its veth
// pair, which the Chromium participants on the host reach as a local address. One
// namespace and one Firefox process for the whole file; a server and Chromium processes
// per test (Chromium is told the server's origin counts as secure, and that has a port).
//
// 1. Firefox + 2 Chromium in one room, with dtls.role client and with server: everyone
//    decodes video and receives audio from the two others.
// 2. Firefox leaves and joins again three times in the same page: media both ways after
//    every Join, one tile for it on the other page.
// 3. No stale picture: a camera participant leaves and one without a camera joins; the
//    Firefox page shows the newcomer's placeholder, never the leaver's last frame.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { launchFirefoxParticipant, firefoxVersion } = require('./lib/firefox');
const { createImpairedNetwork, requireNetnsSupport } = require('./lib/netns');
const { startServer } = require('./lib/server');
const { waitFor } = require('./lib/poll');

const TEST_TIMEOUT_MS = 120000;

let net = null;
let fox = null;

before(async () => {
  requireNetnsSupport();
  net = createImpairedNetwork({ defaultRoute: true });
  fox = await launchFirefoxParticipant('Fox', { net });
  process.stdout.write(`${firefoxVersion()} in ${net.name} (${net.nsAddr}), server on ${net.hostAddr}\n`);
});

after(() => cleanup.runAll());

/** A server on the host end of Firefox's veth pair, media announced there only. */
function serverOnVeth(options = {}) {
  return startServer({ httpHost: net.hostAddr, mediaHost: net.hostAddr, announce: [net.hostAddr], ...options });
}

/** A Chromium participant for pages of `server` (plain http on a non-loopback address). */
function chromium(name, server) {
  return launchParticipant(name, { extraFlags: [`--unsafely-treat-insecure-origin-as-secure=${server.url}`] });
}

const room = (prefix) => `${prefix}-${crypto.randomBytes(3).toString('hex')}`;
const pageUrl = (server, roomName, name, extra = '') => `${server.url}/?room=${roomName}&name=${name}&autojoin=1${extra}`;

/** Per participant id: video frames decoded and audio bytes received on this page. */
function mediaFrom(snap, from) {
  let frames = 0;
  let audioBytes = 0;
  for (const s of snap.stats.inbound || []) {
    if (s.participantId !== from) continue;
    if (s.kind === 'video') frames += s.framesDecoded || 0;
    else audioBytes += s.bytesReceived || 0;
  }
  return { frames, audioBytes };
}

/**
 * Waits until every page decodes video and receives audio from every other page, counted
 * from a first look after all joined (so the media is flowing now, not earlier).
 */
async function everyoneHearsAndSeesEveryone(participants, label, timeoutMs = 30000) {
  const baseline = new Map();
  return waitFor(`${label}: every page decoding every other`, async () => {
    const snaps = await Promise.all(participants.map((p) => p.page.evaluate(pageSnapshot)));
    const notJoined = snaps.map((s, i) => [participants[i].name, s.state]).filter(([, state]) => state !== 'joined');
    if (notJoined.length > 0) return { detail: { notJoined } };
    const missing = [];
    snaps.forEach((snap, i) => {
      snaps.forEach((other, j) => {
        if (i === j) return;
        const key = `${snap.participantId}<-${other.participantId}`;
        const now = mediaFrom(snap, other.participantId);
        if (!baseline.has(key)) baseline.set(key, now);
        const base = baseline.get(key);
        if (!(now.frames > base.frames && now.frames >= 5 && now.audioBytes > base.audioBytes)) {
          missing.push(`${participants[i].name}<-${participants[j].name} frames ${base.frames}->${now.frames} audio ${base.audioBytes}->${now.audioBytes}`);
        }
      });
    });
    return { ok: missing.length === 0, detail: { missing, paths: snaps.map((s) => s.stats.path) }, snaps };
  }, timeoutMs);
}

/** Leaves the room in Firefox's page (if joined) by loading a blank page. */
async function foxLeaves() {
  await fox.page.goto('about:blank');
}

/** What a failed test prints: each page's state and media, console errors, Firefox's own output, the server's log. */
async function evidence(server, participants) {
  const lines = [];
  for (const p of participants) {
    try {
      const s = await p.page.evaluate(pageSnapshot);
      lines.push(`${p.name}: state ${s.state}, id ${s.participantId}, error "${s.error}", tiles ${JSON.stringify(s.tiles)}`);
      lines.push(`  path ${JSON.stringify(s.stats.path)} transport ${JSON.stringify(s.stats.transport)}`);
      lines.push(`  inbound ${JSON.stringify(s.stats.inbound)}`);
      lines.push(`  last events ${JSON.stringify(s.events.slice(-10))}`);
    } catch (error) {
      lines.push(`${p.name}: no snapshot (${error.message})`);
    }
    lines.push(...p.console.slice(-10).map((line) => `  ${line}`));
  }
  lines.push(`Firefox output (tail):\n${fox.output()}`);
  lines.push(`server log (tail):\n${server.log.tail(40)}`);
  return lines.join('\n');
}

/** Runs `body`; on failure prints the evidence first. Always: Firefox leaves, the rest stops. */
async function inCall(t, server, chromiums, body) {
  try {
    await body();
  } catch (error) {
    for (const line of (await evidence(server, [fox, ...chromiums])).split('\n')) t.diagnostic(line);
    throw error;
  } finally {
    await foxLeaves().catch(() => {});
    await Promise.all(chromiums.map((c) => c.close()));
    await server.stop();
  }
}

for (const dtlsRole of ['client', 'server']) {
  test(`Firefox and two Chromium decode each other with dtls.role ${dtlsRole}`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const server = await serverOnVeth({ dtlsRole });
    const name = room(`ff-${dtlsRole}`);
    const [ada, bo] = await Promise.all([chromium('Ada', server), chromium('Bo', server)]);
    await inCall(t, server, [ada, bo], async () => {
      await Promise.all([fox, ada, bo].map((p) => p.open(pageUrl(server, name, p.name))));
      const { snaps } = await everyoneHearsAndSeesEveryone([fox, ada, bo], `dtls.role ${dtlsRole}`);
      // Firefox took its veth address to the server's announced one, and its DTLS role is
      // the complement of the server's forced one.
      const foxSnap = snaps[0];
      assert.equal(foxSnap.stats.path && foxSnap.stats.path.local.split(':')[0], net.nsAddr, 'Firefox media from its veth address');
      assert.equal(foxSnap.stats.path.remote.split(':')[0], net.hostAddr, 'to the announced host end');
      assert.equal(foxSnap.stats.transport.dtlsRole, dtlsRole === 'client' ? 'server' : 'client', 'Firefox DTLS role');
      // Firefox answers the server's simulcast offer and sends the encodings by RID
      // (the Chromium pages decode whichever one the server picks for their tiles)
      const foxEncodings = (foxSnap.stats.outbound || []).filter((o) => o.kind === 'video' && o.rid);
      t.diagnostic(`Firefox sends ${JSON.stringify(foxEncodings.map((o) => ({ rid: o.rid, frames: o.framesEncoded, h: o.frameHeight })))}`);
      assert.ok(foxEncodings.length >= 2, `Firefox publishes simulcast: ${JSON.stringify(foxSnap.stats.outbound)}`);
      t.diagnostic(`dtls.role ${dtlsRole}: ${snaps.map((s, i) => `${[fox, ada, bo][i].name} ${s.stats.path && s.stats.path.local}->${s.stats.path && s.stats.path.remote} rtt ${s.stats.path && s.stats.path.rttMs} ms`).join('; ')}`);
    });
  });
}

test('Firefox leaves and joins again three times in the same page, back in media each time', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const server = await serverOnVeth({ dtlsRole: 'auto' });
  const name = room('ff-rejoin');
  const ada = await chromium('Ada', server);
  await inCall(t, server, [ada], async () => {
    await Promise.all([fox.open(pageUrl(server, name, 'Fox')), ada.open(pageUrl(server, name, 'Ada'))]);
    await everyoneHearsAndSeesEveryone([fox, ada], 'first join');
    const seen = new Set();
    for (let round = 1; round <= 3; round += 1) {
      const before = await fox.page.evaluate(pageSnapshot);
      seen.add(before.participantId);
      // Leave, then Join, with the page's own buttons.
      await fox.page.click('#leave');
      await waitFor(`round ${round}: Ada sees Fox leave`, async () => {
        const s = await ada.page.evaluate(pageSnapshot);
        const ghost = s.participants.some(([id]) => id === before.participantId) || s.tiles.includes(before.participantId);
        return { ok: !ghost, detail: { participants: s.participants, tiles: s.tiles } };
      });
      await fox.page.click('#join');
      const { snaps } = await everyoneHearsAndSeesEveryone([fox, ada], `round ${round}`);
      const [sf, sa] = snaps;
      assert.ok(!seen.has(sf.participantId), `round ${round}: a new session id (${sf.participantId})`);
      assert.deepEqual(sa.tiles.filter((t) => t !== 'self'), [sf.participantId], `round ${round}: Ada shows Fox's new session only`);
      assert.deepEqual(sf.events.filter((e) => e.type === 'offer_failed'), [], `round ${round}: every offer applied in Firefox`);
    }
  });
});

/** Runs in the page: what the tile of participant `id` shows (null when there is none). */
function tileView(id) {
  const el = [...document.querySelectorAll('.tile')].find((t) => t.dataset.participant === id);
  if (!el) return null;
  const video = el.querySelector('video');
  const stream = video && video.srcObject;
  return {
    classes: [...el.classList],
    // Computed `content` of the placeholder: "none" when it is not drawn.
    placeholder: getComputedStyle(el, '::before').content,
    initial: el.dataset.initial,
    videoVisibility: video ? getComputedStyle(video).visibility : null,
    videoWidth: video ? video.videoWidth : 0,
    liveVideoTracks: stream ? stream.getVideoTracks().filter((t) => t.readyState === 'live').length : 0,
  };
}

test('Firefox shows a newcomer without a camera as a placeholder, never the last frame of one who left', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const server = await serverOnVeth({ dtlsRole: 'auto' });
  const name = room('ff-stale');
  const [ada, bo] = await Promise.all([chromium('Ada', server), chromium('Bo', server)]);
  await inCall(t, server, [ada, bo], async () => {
    await Promise.all([fox, ada, bo].map((p) => p.open(pageUrl(server, name, p.name))));
    const { snaps } = await everyoneHearsAndSeesEveryone([fox, ada, bo], 'all three in the call');
    const adaId = snaps[1].participantId;

    await ada.page.click('#leave');
    await waitFor('Fox and Bo see Ada go', async () => {
      const [sf, sb] = await Promise.all([fox.page.evaluate(pageSnapshot), bo.page.evaluate(pageSnapshot)]);
      const shown = [sf, sb].filter((s) => s.tiles.includes(adaId) || s.participants.some(([id]) => id === adaId));
      return { ok: shown.length === 0, detail: { fox: sf.tiles, bo: sb.tiles } };
    });

    // Dee joins from the same Chromium with no camera (microphone only).
    await ada.open(pageUrl(server, name, 'Dee', '&video=0'));
    const audioBaseline = new Map();
    await waitFor('Fox and Bo hear Dee and show her placeholder', async () => {
      const sd = await ada.page.evaluate(pageSnapshot);
      if (sd.state !== 'joined') return { detail: { dee: sd.state } };
      const deeId = sd.participantId;
      const pending = [];
      for (const page of [fox, bo]) {
        const [snap, view] = await Promise.all([page.page.evaluate(pageSnapshot), page.page.evaluate(tileView, deeId)]);
        const media = mediaFrom(snap, deeId);
        // Never a picture on Dee's tile, at any poll: no video track, nothing rendered, no
        // decoded frame attributed to her (a recycled receiver still carrying Ada's video
        // would show up in all three).
        if (view) {
          assert.ok(view.classes.includes('no-video'), `${page.name}: Dee's tile has the placeholder class: ${JSON.stringify(view)}`);
          assert.ok(view.placeholder !== 'none' && view.placeholder !== 'normal', `${page.name}: Dee's placeholder is drawn: ${view.placeholder}`);
          assert.equal(view.initial, 'D', `${page.name}: Dee's placeholder shows her initial`);
          assert.equal(view.videoVisibility, 'hidden', `${page.name}: Dee's tile hides its video element`);
          assert.equal(view.videoWidth, 0, `${page.name}: nothing rendered on Dee's tile`);
          assert.equal(view.liveVideoTracks, 0, `${page.name}: no video track on Dee's tile`);
        }
        assert.equal(media.frames, 0, `${page.name}: no video frames attributed to Dee`);
        assert.ok(!snap.tiles.includes(adaId), `${page.name}: no tile for Ada`);
        if (!audioBaseline.has(page.name)) audioBaseline.set(page.name, media.audioBytes);
        if (!view || !(media.audioBytes > audioBaseline.get(page.name))) {
          pending.push({ page: page.name, tile: Boolean(view), audio: media.audioBytes, tiles: snap.tiles });
        }
      }
      return { ok: pending.length === 0, detail: pending };
    });
  });
});
