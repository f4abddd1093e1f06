'use strict';
// End-to-end group call through the real server with headless Chromium peers:
// 4 participants, every one decodes video and receives audio from the 3 others within
// 20 s, keeps doing so for 30 s (checked per 5 s window), then one leaves and the other
// three see it go within 10 s. Once with the server as DTLS client, once as DTLS server.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');

const cleanup = require('./lib/cleanup');
const { runCall } = require('./lib/scenario');

/** Upper bound for one scenario; a healthy one takes about a minute on 2 cores. */
const SCENARIO_TIMEOUT_MS = 150000;

after(() => cleanup.runAll());

const scenarios = [
  { dtlsRole: 'client', leaveBy: 'click' },
  { dtlsRole: 'server', leaveBy: 'close' },
];

for (const { dtlsRole, leaveBy } of scenarios) {
  test(
    `four participants exchange audio and video with dtls.role ${dtlsRole}, and see a leaver (${leaveBy}) go`,
    { timeout: SCENARIO_TIMEOUT_MS },
    async () => {
      const result = await runCall({ dtlsRole, leaveBy, participants: 4, label: `call-${dtlsRole}` });
      assert.ok(result.ok, `scenario failed (details above and in ${result.resultsDir}):\n${result.failures.join('\n')}`);
    },
  );
}
