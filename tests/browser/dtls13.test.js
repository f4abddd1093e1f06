'use strict';
// DTLS 1.3 with real Chromium: Chromium offers DTLS 1.3 in every ClientHello, and a
// server with `dtls.versions: ["1.3", "1.2"]` must complete a 1.3 handshake with it in
// either DTLS role (getStats names the version: FEFC is DTLS 1.3, FEFD DTLS 1.2), media
// must flow both ways, and a server restricted to 1.2 must still be answered with 1.2.
// The key exchange must be the X25519MLKEM768 hybrid in both roles: the server counts
// completed handshakes by version and group (sluice_dtls_handshakes_negotiated_total),
// and when Chromium's RTCTransportStats names the group (tlsGroup), it must say so too.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const cleanup = require('./lib/cleanup');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { startServer } = require('./lib/server');
const { waitFor, videoFramesFrom } = require('./lib/poll');

const TEST_TIMEOUT_MS = 150000;

after(() => cleanup.runAll());

/** Two pages in a room of `server`: the DTLS version each negotiated once both decode. */
async function callVersions(server, label) {
  const room = `${label}-${crypto.randomBytes(3).toString('hex')}`;
  const pages = [await launchParticipant('Ada'), await launchParticipant('Bo')];
  await Promise.all(pages.map((p, i) => p.open(`${server.url}/?room=${room}&name=${['Ada', 'Bo'][i]}&autojoin=1`)));
  const { snaps } = await waitFor(`${label}: both pages decode each other`, async () => {
    const snaps = await Promise.all(pages.map((p) => p.page.evaluate(pageSnapshot)));
    const ids = snaps.map((s) => s.participantId);
    const ok = snaps.every((s, i) => ids.every((id, j) => i === j || videoFramesFrom(s, id) >= 10));
    return { ok, snaps, detail: snaps.map((s) => ({ state: s.state, transport: s.stats && s.stats.transport })) };
  }, 60000);
  // The raw transport stats, for fields the page's snapshot does not copy (tlsGroup).
  const raw = await Promise.all(pages.map((p) => p.page.evaluate(async () => {
    const report = await window.sluice.pc.getStats();
    let transport = {};
    report.forEach((s) => { if (s.type === 'transport') transport = s; });
    return { group: transport.tlsGroup, fields: Object.keys(transport).sort() };
  })));
  console.log(`${label}: RTCTransportStats fields: ${raw[0].fields.join(', ')}`);
  const groups = raw.map((r) => r.group);
  await Promise.all(pages.map((p) => p.close()));
  return snaps.map((s, i) => ({
    version: s.stats.transport && s.stats.transport.tlsVersion,
    role: s.stats.transport && s.stats.transport.dtlsRole,
    cipher: s.stats.transport && s.stats.transport.srtpCipher,
    group: groups[i],
  }));
}

/** The value of one sample line of the server's /metrics text, 0 when absent. */
async function metricValue(server, series) {
  const text = (await server.metrics()) || '';
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const HYBRID_13 = 'sluice_dtls_handshakes_negotiated_total{version="1.3",group="X25519MLKEM768"}';
const CLASSICAL_13 = 'sluice_dtls_handshakes_negotiated_total{version="1.3",group="x25519"}';

test('Chromium negotiates DTLS 1.3 with the server as DTLS server and as DTLS client', { timeout: TEST_TIMEOUT_MS }, async () => {
  for (const dtlsRole of ['server', 'client']) {
    const server = await startServer({ dtlsRole, dtls: { versions: ['1.3', '1.2'] } });
    const seen = await callVersions(server, `dtls13-${dtlsRole}`);
    console.log(`server as DTLS ${dtlsRole}: ${JSON.stringify(seen)}`);
    for (const s of seen) assert.equal(s.version, 'FEFC', `DTLS 1.3 negotiated (server ${dtlsRole}): ${JSON.stringify(seen)}`);
    const hybrid = await metricValue(server, HYBRID_13);
    console.log(`server as DTLS ${dtlsRole}: ${HYBRID_13} ${hybrid}`);
    assert.ok(hybrid >= 2, `both handshakes on X25519MLKEM768 (server ${dtlsRole}): ${hybrid}`);
    assert.equal(await metricValue(server, CLASSICAL_13), 0, `no 1.3 handshake on X25519 (server ${dtlsRole})`);
    for (const s of seen) {
      if (s.group !== undefined) assert.equal(s.group, 'X25519MLKEM768', JSON.stringify(seen));
    }
    await server.stop();
  }
});

test('a server that speaks only DTLS 1.2 still serves Chromium with 1.2', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer({ dtlsRole: 'auto', dtls: { versions: ['1.2'] } });
  const seen = await callVersions(server, 'dtls12');
  console.log(`1.2-only server: ${JSON.stringify(seen)}`);
  for (const s of seen) assert.equal(s.version, 'FEFD', JSON.stringify(seen));
  await server.stop();
});
