'use strict';
// The resilience scenarios (docs/resilience.md) as option sets for lib/scenario.js runCall:
// one participant behind the netsim relay in its own network namespace, the rest clean.
// Used by resilience.test.js (the short form in `node --test`) and by
// tests/resilience/browser.js (the long form behind scripts/resilience.sh).

/** The seed's link: 225 kbit/s up, 5 Mbit/s down (tbf), 70 ms one-way delay each way (relay). */
const SEED_LINK = { upRateKbit: 225, downRateKbit: 5000, delayMs: 70 };

/** Timings for impaired runs: a handshake may take most of the server's 30 s deadline. */
const IMPAIRED_TIMINGS = {
  mediaDeadlineMs: 45000,
  steadyMs: 30000,
  windowMs: 5000,
};

/**
 * Scenario 1, the seed: `lossPercent` random loss both ways on the impaired link, or
 * only during its first `lossWindowS` seconds (from the relay's first datagram of it).
 */
function seedScenario({ participants = 6, lossPercent, lossWindowS = null, recovery = true, dtlsRole = 'auto', steadyMs, seed = 1 }) {
  const relayArgs = ['--delay-ms', String(SEED_LINK.delayMs)];
  if (lossPercent > 0) relayArgs.push('--loss', String(lossPercent / 100));
  if (lossWindowS !== null) relayArgs.push('--loss-window-s', `0,${lossWindowS}`);
  const lossName = lossWindowS === null ? `${lossPercent}pct` : `${lossPercent}pct-first-${lossWindowS}s`;
  return {
    label: `seed-${lossName}-${recovery ? 'recovery' : 'norecovery'}`,
    participants,
    dtlsRole,
    leaveBy: null,
    dtls: recovery ? {} : { recovery: false },
    impairment: {
      participant: 0,
      upRateKbit: SEED_LINK.upRateKbit,
      downRateKbit: SEED_LINK.downRateKbit,
      relayArgs,
      seed,
    },
    timings: { ...IMPAIRED_TIMINGS, ...(steadyMs ? { steadyMs } : {}) },
  };
}

/**
 * Scenario 2, the handshake storm: every participant presses Join at once while one link
 * drops `lossPercent` of datagrams both ways; certificate flights cut to 576-byte datagrams.
 */
function stormScenario({ participants = 6, lossPercent = 30, dtlsRole, recovery = true, steadyMs, seed = 2 }) {
  return {
    label: `storm-${dtlsRole}-${lossPercent}pct-${recovery ? 'recovery' : 'norecovery'}`,
    participants,
    dtlsRole,
    leaveBy: null,
    joinBy: 'click',
    dtls: recovery ? { max_datagram_size: 576 } : { max_datagram_size: 576, recovery: false },
    impairment: {
      participant: 0,
      upRateKbit: null,
      downRateKbit: null,
      relayArgs: ['--loss', String(lossPercent / 100)],
      seed,
      // 30 % sustained loss each way: audio must keep arriving and every video must have been
      // decoded, but a picture may stay frozen for the phase (no FEC; every retransmission
      // and keyframe request crosses the same 30 %).
      lossyVideo: 'once',
    },
    timings: { ...IMPAIRED_TIMINGS, ...(steadyMs ? { steadyMs } : {}) },
  };
}

module.exports = { seedScenario, stormScenario, SEED_LINK, IMPAIRED_TIMINGS };
