'use strict';
// A narrow downlink in a room of four Chromium publishing simulcast: one participant's
// downlink is limited to 600 kbit/s (tbf in its network namespace, 20 ms each way through
// the netsim relay). With simulcast and bandwidth estimation it must decode every other
// participant (on their low encodings) with audio flowing, while the others receive the
// high encodings. The same call with both switched off runs second, for the side-by-side
// numbers of docs/congestion.md; only the first run's outcome is asserted.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');

const cleanup = require('./lib/cleanup');
const { runCall } = require('./lib/scenario');
const { requireNetnsSupport } = require('./lib/netns');
const { relayBinary } = require('./lib/relay');

const PARTICIPANTS = 4;
const DOWN_KBIT = 600;
/** A quarter of the 720p camera (plus slack for odd scaling). */
const QUARTER = 188;
const SCENARIO_TIMEOUT_MS = 150000;
const RELAY_BUILD_TIMEOUT_MS = 600000;

before(() => relayBinary(), { timeout: RELAY_BUILD_TIMEOUT_MS });
after(() => cleanup.runAll());

function narrowDownlink(label, media) {
  return {
    label,
    participants: PARTICIPANTS,
    dtlsRole: 'auto',
    leaveBy: null,
    media,
    impairment: {
      participant: 0,
      upRateKbit: null,
      downRateKbit: DOWN_KBIT,
      relayArgs: ['--delay-ms', '20'],
      seed: 3,
    },
    timings: { mediaDeadlineMs: 30000, steadyMs: 20000, windowMs: 5000 },
  };
}

/** One line per participant: frames, freezes, the heights it decodes, bytes received. */
function describe(result) {
  return result.summary.participants
    .map(
      (p) =>
        `${p.name}${p.impaired ? ' (600 kbit/s down)' : ''}: frames ${p.framesDecoded}, freezes ${p.freezeCount} ` +
        `(${p.freezesSeconds} s), heights ${JSON.stringify(p.inboundHeights)}, audio samples ${p.audioSamples}, ` +
        `received ${Math.round((p.bytesReceived || 0) / 1024)} KiB`,
    )
    .join('\n');
}

test(`a ${DOWN_KBIT} kbit/s downlink in a room of ${PARTICIPANTS} gets every camera on a low encoding, the others high ones`, { timeout: 2 * SCENARIO_TIMEOUT_MS }, async () => {
  requireNetnsSupport();
  const adapted = await runCall(narrowDownlink('narrow-downlink-adapted', {}));
  process.stdout.write(`simulcast + estimation on:\n${describe(adapted)}\n`);
  const baseline = await runCall(narrowDownlink('narrow-downlink-baseline', { simulcast: false, bandwidth_estimation: false }));
  process.stdout.write(`simulcast + estimation off:\n${describe(baseline)}\nbaseline outcome: ${baseline.ok ? 'every check passed' : baseline.failures.join('; ')}\n`);

  assert.ok(adapted.ok, `scenario failed (details above and in ${adapted.resultsDir}):\n${adapted.failures.join('\n')}`);
  const [narrow, ...others] = adapted.summary.participants;
  assert.ok(narrow.impaired);
  const heights = narrow.inboundHeights;
  assert.equal(heights.length, PARTICIPANTS - 1, 'the narrow participant decodes every other camera');
  assert.ok(heights.every((h) => h > 0), `every camera decoded on the narrow link: ${JSON.stringify(heights)}`);
  // low encodings: at least one quarter-resolution camera, the rest at most half
  assert.ok(heights.some((h) => h <= QUARTER) && heights.every((h) => h <= 2 * QUARTER), `low encodings on the narrow link: ${JSON.stringify(heights)}`);
  assert.ok(narrow.audioSamples > 0, 'audio reaches the narrow participant');
  const sum = (hs) => hs.reduce((a, b) => a + b, 0);
  // Chromium stops its own top encodings when four browsers share two cores (then every
  // receiver gets the quarter one), so the others are compared with the narrow link as a
  // group: some of them receive higher encodings than it does.
  assert.ok(
    others.some((p) => p.inboundHeights.some((h) => h > QUARTER) && sum(p.inboundHeights) > sum(heights)),
    `the others receive higher encodings than the narrow link: ${JSON.stringify(others.map((p) => p.inboundHeights))} vs ${JSON.stringify(heights)}`,
  );
});
