'use strict';
// Runs the call scenario against the mock SFU, to check the harness itself:
//   node tests/browser/mock/run.js [participants]   (3 by default: the hub re-encodes)
const cleanup = require('../lib/cleanup');
const { runCall } = require('../lib/scenario');
const { startMockSfu } = require('./server');

(async () => {
  const participants = Number(process.argv[2] || 3);
  const result = await runCall({
    dtlsRole: 'auto',
    participants,
    leaveBy: process.argv[3] || 'click',
    label: 'mock',
    startServer: startMockSfu,
  });
  await cleanup.runAll();
  process.exit(result.ok ? 0 : 1);
})();
