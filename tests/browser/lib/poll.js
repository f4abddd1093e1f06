'use strict';
// Waiting for a page's state without fixed sleeps: poll a condition until a deadline.

/** How often a condition is checked. */
const POLL_MS = 250;
/** How long one condition may take by default (a join, decoding, a leave seen). */
const STEP_TIMEOUT_MS = 30000;

/**
 * Polls `check` (async; returns `{ ok, detail, ... }`) until `ok`, and returns that result;
 * throws with the last `detail` after `timeoutMs`.
 */
async function waitFor(what, check, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last && last.ok) return last;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last && last.detail)}`);
}

/** Video frames a page snapshot shows decoded from participant `from`. */
function videoFramesFrom(snap, from) {
  return (snap.stats.inbound || [])
    .filter((s) => s.kind === 'video' && s.participantId === from)
    .reduce((sum, s) => sum + (s.framesDecoded || 0), 0);
}

module.exports = { waitFor, videoFramesFrom, STEP_TIMEOUT_MS };
