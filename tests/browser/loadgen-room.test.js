'use strict';
// Chromium participants in a room that sluice-loadgen fills (lib/loadroom-scenario.js):
// every browser connects, lists and receives RTP from every loadgen publisher and every
// other browser with counters rising over two successive windows, and the loadgen's final
// --json shows its clients received the browsers' media with no decrypt failures.
// CI size by default (2 browsers, 6 loadgen publishers + 1 subscriber, 30 s loadgen run,
// under a minute); LOADGEN_BROWSERS, LOADGEN_PUBLISHERS, LOADGEN_SUBSCRIBERS,
// LOADGEN_DURATION_S and LOADGEN_POLL_S make it larger for a manual run.

const { test, describe, after } = require('node:test');
const assert = require('node:assert/strict');

const cleanup = require('./lib/cleanup');
const room = require('./lib/loadroom');
const { parseSummary } = require('./lib/loadgen');
const { runLoadgenRoom, DEFAULTS } = require('./lib/loadroom-scenario');

after(() => cleanup.runAll());

/** A positive integer from the environment, else `fallback`; anything else is an error. */
function envCount(name, fallback, min = 1) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name}=${raw}: want an integer >= ${min}`);
  return value;
}

const inbound = (participantId, kind, ssrc, fields) => ({ participantId, kind, ssrc, ...fields });
const snap = (now, entries, extra = {}) => ({ now, inbound: entries, outbound: [], participants: [], ...extra });

describe('loadroom analysis', () => {
  test('tracks of one participant and kind add up over SSRCs, jitter is the largest', () => {
    const s = snap(0, [
      inbound('p-1', 'video', 1, { packetsReceived: 10, jitter: 0.002 }),
      inbound('p-1', 'video', 2, { packetsReceived: 5, jitter: 0.004 }),
      inbound('p-1', 'audio', 3, { packetsReceived: 7 }),
      inbound(null, 'audio', 4, { packetsReceived: 99 }),
    ]);
    const tracks = room.tracksByPeer(s);
    assert.deepEqual([...tracks.keys()], ['p-1']);
    assert.equal(tracks.get('p-1').get('video').packetsReceived, 15);
    assert.deepEqual(tracks.get('p-1').get('video').ssrcs, [1, 2]);
    assert.equal(tracks.get('p-1').get('video').jitter, 0.004);
    assert.equal(room.counter(s, 'p-1', 'audio', 'packetsReceived'), 7);
    assert.equal(room.counter(s, 'p-9', 'audio', 'packetsReceived'), 0);
  });

  test('names resolve to ids through the participant list, unlisted names are reported', () => {
    const s = snap(0, [], { participants: [['p-1', 'pub-0-0'], ['p-2', 'chrome-1']] });
    const { ids, missing } = room.idsForNames(s, ['pub-0-0', 'chrome-1', 'pub-0-1']);
    assert.deepEqual([...ids.entries()], [['pub-0-0', 'p-1'], ['chrome-1', 'p-2']]);
    assert.deepEqual(missing, ['pub-0-1']);
  });

  test('a participant without packets of a kind is not receiving', () => {
    const s = snap(0, [inbound('p-1', 'audio', 1, { packetsReceived: 3 }), inbound('p-1', 'video', 2, { packetsReceived: 0 })]);
    assert.deepEqual(room.notReceiving(s, ['p-1', 'p-2']), [
      { peer: 'p-1', kind: 'video' },
      { peer: 'p-2', kind: 'audio' },
      { peer: 'p-2', kind: 'video' },
    ]);
  });

  test('each of two successive windows must show the counter rising', () => {
    const at = (t, audio, video) => snap(t, [inbound('p-1', 'audio', 1, { packetsReceived: audio }), inbound('p-1', 'video', 2, { packetsReceived: video })]);
    const rising = [at(0, 1, 1), at(5000, 2, 2), at(10000, 3, 3)];
    assert.deepEqual(room.successiveWindows(rising, 0, 5000, 2, ['p-1']), []);
    // Video stops after the first window: only the second fails, naming video.
    const stalls = [at(0, 1, 1), at(5000, 2, 2), at(10000, 3, 2)];
    const failures = room.successiveWindows(stalls, 0, 5000, 2, ['p-1']);
    assert.equal(failures.length, 1);
    assert.equal(failures[0].index, 1);
    assert.deepEqual(failures[0].stalled, [{ peer: 'p-1', kind: 'video' }]);
    // A window without two distinct snapshots cannot pass.
    assert.equal(room.successiveWindows([at(0, 1, 1)], 0, 5000, 2, ['p-1']).length, 2);
  });

  test('browser media at the loadgen is what it received beyond what its own publishers could send', () => {
    // 6 publishers + 1 subscriber: each loadgen packet reaches at most 6 other clients.
    const json = { packets_sent: 1000, packets_received: 6000 + 7 * 400 };
    const seen = room.loadgenSawBrowsers({ json, publishers: 6, subscribers: 1, browserPacketsSent: 400 });
    assert.equal(seen.loadgenOriginMax, 6000);
    assert.equal(seen.excess, 2800);
    assert.equal(seen.expectedFromBrowsers, 2800);
    assert.ok(seen.ok);
    // Without the browsers' packets the same totals fail.
    const without = room.loadgenSawBrowsers({ json: { packets_sent: 1000, packets_received: 5900 }, publishers: 6, subscribers: 1, browserPacketsSent: 400 });
    assert.ok(!without.ok);
    // Nothing sent by the browsers proves nothing.
    assert.ok(!room.loadgenSawBrowsers({ json, publishers: 6, subscribers: 1, browserPacketsSent: 0 }).ok);
  });

  test('the loadgen summary is the last JSON object line of its output', () => {
    assert.deepEqual(parseSummary('t=1s progress\n{"clients": 2}\n'), { clients: 2 });
    assert.deepEqual(parseSummary('{"a":1}\n{"b":2}'), { b: 2 });
    assert.equal(parseSummary('no json here\n{broken'), null);
  });

  test('the browser table names every remote track and the outbound streams', () => {
    const s = snap(0, [inbound('p-1', 'video', 7, { packetsReceived: 12, framesDecoded: 3, jitter: 0.0125 })], {
      participantId: 'p-2',
      participants: [['p-1', 'pub-0-0']],
      connectionState: 'connected',
      transport: { dtlsState: 'connected', dtlsRole: 'client' },
      path: { local: '192.0.2.1:1', remote: '127.0.0.1:2', rttMs: 1 },
      outbound: [{ kind: 'audio', ssrc: 9, packetsSent: 50, bytesSent: 4000 }],
    });
    const table = room.browserTable('chrome-0', s, (id) => (id === 'p-1' ? 'pub-0-0' : id));
    assert.match(table, /chrome-0 \(p-2\): pc connected, pair 192\.0\.2\.1:1 -> 127\.0\.0\.1:2 rtt 1 ms, dtls connected \(client\)/);
    assert.match(table, /remote participants 1 listed \/ 1 sending/);
    assert.match(table, /pub-0-0 \(p-1\)\s+video\s+1\s+12\s+0\s+12\.5/);
    assert.match(table, /audio\s+9\s+50\s+4000/);
  });
});

const config = {
  browsers: envCount('LOADGEN_BROWSERS', DEFAULTS.browsers),
  publishers: envCount('LOADGEN_PUBLISHERS', DEFAULTS.publishers),
  subscribers: envCount('LOADGEN_SUBSCRIBERS', DEFAULTS.subscribers),
  durationS: envCount('LOADGEN_DURATION_S', DEFAULTS.durationS, 5),
  pollS: envCount('LOADGEN_POLL_S', DEFAULTS.pollS, 2),
};

test(
  `${config.browsers} Chromium participants in a room filled by sluice-loadgen (${config.publishers} publishers + ${config.subscribers} subscribers)`,
  // The loadgen runs its full duration; launch, teardown and its leave come on top.
  { timeout: (config.durationS + 60 + 5 * config.browsers) * 1000 },
  async () => {
    const result = await runLoadgenRoom(config);
    assert.ok(result.ok, `scenario failed (details above and in ${result.resultsDir}):\n${result.failures.join('\n')}`);
  },
);
