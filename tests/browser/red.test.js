'use strict';
// Audio redundancy from the server to real Chromium: with RED forced on
// (`media.audio_red_loss_percent: 0`), every Opus packet to a page that accepted RED
// carries the previous frame too. Chromium must decode that stream as audio: samples
// keep arriving with almost nothing concealed and with the energy of the other page's
// fake microphone, while the server counts the RED packets it sent. The fake
// microphones' beeps also make one of the two the room's dominant speaker, and both
// pages outline that tile.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor } = require('./lib/poll');

const TEST_TIMEOUT_MS = 120000;

after(() => cleanup.runAll());

/** The inbound audio entry of `snap` from participant `from`. */
function audioFrom(snap, from) {
  return (snap.stats.inbound || []).find((s) => s.kind === 'audio' && s.participantId === from) || {};
}

async function metric(server, name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

test('Chromium decodes the audio the server sends it as RED, and the pages show the dominant speaker', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ dtlsRole: 'auto', media: { audio_red_loss_percent: 0, simulcast: false } });
  const room = `red-${crypto.randomBytes(3).toString('hex')}`;
  const ada = await launchParticipant('Ada');
  const bo = await launchParticipant('Bo');
  await ada.open(`${server.url}/?room=${room}&name=Ada&autojoin=1`);
  await bo.open(`${server.url}/?room=${room}&name=Bo&autojoin=1`);

  const first = await waitFor('Bo receives Ada\'s audio as RED', async () => {
    const [a, b] = await Promise.all([ada.page.evaluate(pageSnapshot), bo.page.evaluate(pageSnapshot)]);
    const audio = audioFrom(b, a.participantId);
    const red = await metric(server, 'sluice_router_red_packets_sent_total');
    return {
      ok: red >= 100 && (audio.totalSamplesReceived || 0) > 0,
      a,
      audio,
      detail: { red, audio },
    };
  }, 60000);
  const before = first.audio;
  const redBefore = await metric(server, 'sluice_router_red_packets_sent_total');

  // Five more seconds of the call: RED keeps going out and Chromium keeps decoding it.
  const later = await waitFor('five more seconds of decoded audio', async () => {
    const b = await bo.page.evaluate(pageSnapshot);
    const audio = audioFrom(b, first.a.participantId);
    const samples = (audio.totalSamplesReceived || 0) - (before.totalSamplesReceived || 0);
    return { ok: samples >= 5 * 48000, audio, detail: { samples } };
  }, 30000);
  const audio = later.audio;
  const samples = audio.totalSamplesReceived - before.totalSamplesReceived;
  const concealed = (audio.concealedSamples || 0) - (before.concealedSamples || 0);
  const energy = (audio.totalAudioEnergy || 0) - (before.totalAudioEnergy || 0);
  const redSent = (await metric(server, 'sluice_router_red_packets_sent_total')) - redBefore;
  console.log(
    `RED to Chromium: ${redSent} RED packets sent, ${samples} samples decoded, ${concealed} concealed, ` +
      `audio energy ${energy.toFixed(4)}, codec ${audio.mimeType}`,
  );
  assert.ok(redSent >= 200, `RED packets kept going out: ${redSent}`);
  assert.ok(concealed / samples < 0.1, `hardly any audio concealed: ${concealed} of ${samples}`);
  assert.ok(energy > 0, 'the decoded audio is the fake microphone\'s tone, not silence');

  // The fake microphones beep: the server names a dominant speaker from the audio levels
  // Chromium writes (RFC 6464), and both pages outline that participant's tile.
  const adaId = first.a.participantId;
  const shown = await waitFor('both pages show the same dominant speaker', async () => {
    const views = await Promise.all(
      [ada, bo].map((p) =>
        p.page.evaluate(() => {
          const outlined = [...document.querySelectorAll('.tile.speaking')].map((t) => t.dataset.participant || 'self');
          return { dominant: window.sluice.dominantSpeaker, self: window.sluice.participantId, outlined };
        }),
      ),
    );
    const [a, b] = views;
    const ok =
      a.dominant !== null &&
      a.dominant === b.dominant &&
      views.every((v) => v.outlined.length === 1 && (v.outlined[0] === v.dominant || (v.outlined[0] === 'self' && v.dominant === v.self)));
    return { ok, views, detail: views };
  }, 30000);
  console.log(`dominant speaker: ${JSON.stringify(shown.views)} (Ada is ${adaId})`);
});
