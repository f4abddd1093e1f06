'use strict';
// Long form of the browser resilience scenarios (docs/resilience.md), one command:
//
//   node tests/resilience/browser.js [scenario1|scenario2|all|handshakes|features|downlink] [--recovery on|off|both]
//        [--participants N] [--steady-ms MS] [--repeat N] [--seed-base N] [--out DIR]
//        [--dtls-versions 1.2|1.3,1.2]   (the server's dtls.versions; default its own)
//
// Scenario 1 (the seed): 6 participants, one on 225 kbit/s up / 5 Mbit/s down / 70 ms each
// way, at 0, 5 and 15 % random loss and with 30 % loss during its first 10 s only.
// Scenario 2 (handshake storm): 6 participants press Join at once, one link drops 30 %,
// dtls.max_datagram_size 576, server as DTLS client and as DTLS server.
// `handshakes`: scenario 2 `--repeat` times per role and recovery mode with a different
// loss pattern each time (more samples of the one impaired handshake per run).
// `features`: scenario 1 at 15 % loss `--repeat` times with the server's loss recovery for
// subscribers as configured by default, and again with audio redundancy (RED) off, to
// show what each feature changes for the impaired participant (audio concealed, freezes).
// `fec`: scenario 1 at 15 % loss `--repeat` times with the server's video FEC toward lossy
// subscribers on and off, alternated (`media.video_fec`), for the impaired participant's
// video freezes, frozen seconds, frames decoded, losses and the FEC its browser received.
// `downlink`: `--participants` (6) Chromium publishing simulcast, one of them behind a
// 1 Mbit/s downlink (tbf, 20 ms each way, no loss), `--repeat` times with the server's
// adaptation on (simulcast, bandwidth estimation, allocation, pacing) and off, to show the
// narrow participant's freezes and the others' quality with and without it.
// Each run once with the server's DTLS recovery on (default) and once with
// `dtls.recovery: false`. Per-run artefacts go to tests/browser/results/<label>/; the
// summary tables (Markdown) to OUT/summary.md (default tests/resilience/results/<time>/).
// Needs root (network namespaces). Exit code 1 when any run with recovery on failed.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const cleanup = require('../browser/lib/cleanup');
const { runCall } = require('../browser/lib/scenario');
const { requireNetnsSupport } = require('../browser/lib/netns');
const { seedScenario, stormScenario } = require('../browser/lib/resilience');

function parseArgs(argv) {
  const args = { which: 'all', recovery: 'both', participants: 6, steadyMs: 30000, out: null, repeat: 5, seedBase: 100 };
  const rest = [...argv];
  while (rest.length > 0) {
    const arg = rest.shift();
    if (arg === '--recovery') args.recovery = rest.shift();
    else if (arg === '--participants') args.participants = Number(rest.shift());
    else if (arg === '--steady-ms') args.steadyMs = Number(rest.shift());
    else if (arg === '--out') args.out = rest.shift();
    else if (arg === '--repeat') args.repeat = Number(rest.shift());
    else if (arg === '--seed-base') args.seedBase = Number(rest.shift());
    else if (arg === '--dtls-versions') args.dtlsVersions = rest.shift().split(',');
    else if (['scenario1', 'scenario2', 'all', 'handshakes', 'features', 'downlink', 'fec'].includes(arg)) args.which = arg;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!['on', 'off', 'both'].includes(args.recovery)) throw new Error('--recovery takes on, off or both');
  return args;
}

function runsFor({ which, recovery, participants, steadyMs, repeat, seedBase }) {
  const modes = recovery === 'both' ? [true, false] : [recovery === 'on'];
  const runs = [];
  if (which === 'handshakes') {
    // More samples of the storm's impaired handshake: a different loss pattern per repeat.
    for (let i = 0; i < repeat; i += 1) {
      for (const rec of modes) {
        for (const dtlsRole of ['server', 'client']) {
          const options = stormScenario({ participants, dtlsRole, recovery: rec, steadyMs, seed: seedBase + i });
          options.label += `-${seedBase + i}`;
          runs.push(options);
        }
      }
    }
    return runs;
  }
  if (which === 'downlink') {
    const variants = [
      { name: 'adapted', media: {} },
      { name: 'baseline', media: { simulcast: false, bandwidth_estimation: false } },
    ];
    for (let i = 0; i < repeat; i += 1) {
      for (const variant of variants) {
        runs.push({
          label: `downlink-1mbit-${participants}p-${variant.name}-${seedBase + i}`,
          participants,
          dtlsRole: 'auto',
          leaveBy: null,
          dtls: {},
          media: variant.media,
          impairment: {
            participant: 0,
            upRateKbit: null,
            downRateKbit: 1000,
            relayArgs: ['--delay-ms', '20'],
            seed: seedBase + i,
          },
          timings: { mediaDeadlineMs: 30000, steadyMs, windowMs: 5000 },
        });
      }
    }
    return runs;
  }
  if (which === 'fec') {
    const variants = [
      { name: 'fec-on', media: { simulcast: false, video_fec: true } },
      { name: 'fec-off', media: { simulcast: false, video_fec: false } },
    ];
    for (let i = 0; i < repeat; i += 1) {
      for (const variant of variants) {
        const options = seedScenario({ participants, lossPercent: 15, recovery: true, steadyMs, seed: seedBase + i });
        options.media = variant.media;
        options.label += `-${variant.name}-${seedBase + i}`;
        runs.push(options);
      }
    }
    return runs;
  }
  if (which === 'features') {
    const variants = [
      { name: 'default', media: { simulcast: false } },
      { name: 'no-red', media: { simulcast: false, audio_redundancy: false } },
    ];
    for (let i = 0; i < repeat; i += 1) {
      for (const variant of variants) {
        const options = seedScenario({ participants, lossPercent: 15, recovery: true, steadyMs, seed: seedBase + i });
        options.media = variant.media;
        options.label += `-${variant.name}-${seedBase + i}`;
        runs.push(options);
      }
    }
    return runs;
  }
  for (const rec of modes) {
    if (which !== 'scenario2') {
      for (const lossPercent of [0, 5, 15]) runs.push(seedScenario({ participants, lossPercent, recovery: rec, steadyMs }));
      runs.push(seedScenario({ participants, lossPercent: 30, lossWindowS: 10, recovery: rec, steadyMs }));
    }
    if (which !== 'scenario1') {
      for (const dtlsRole of ['client', 'server']) runs.push(stormScenario({ participants, dtlsRole, recovery: rec, steadyMs }));
    }
  }
  return runs;
}

const fmt = (v) => (v === null || v === undefined ? '-' : String(v));

/** One Markdown row per run: the impaired participant against the worst clean one. */
function summaryRow(options, result) {
  const s = result.summary || { participants: [], server: {} };
  const impaired = s.participants.find((p) => p.impaired) || {};
  const clean = s.participants.filter((p) => !p.impaired);
  const max = (key) => {
    const values = clean.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    return values.length === clean.length && values.length ? Math.max(...values) : null;
  };
  const min = (key) => {
    const values = clean.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    return values.length ? Math.min(...values) : null;
  };
  const sum = (key) => clean.reduce((acc, p) => acc + (p[key] || 0), 0);
  return (
    `| ${options.label} | ${options.dtls.recovery === false ? 'off' : 'on'} | ${result.ok ? 'pass' : 'FAIL'} | ` +
    `${fmt(s.server.handshakesCompleted)}/${fmt(s.server.handshakesStarted)} (${fmt(s.server.handshakesFailed)} failed) | ` +
    `${fmt(impaired.dtlsHandshakeMs)} / ${fmt(max('dtlsHandshakeMs'))} | ` +
    `${fmt(impaired.serverHandshakeMs)} / ${fmt(max('serverHandshakeMs'))} | ${fmt(s.server.retransmissions)} | ` +
    `${fmt(impaired.firstFrameFromAllMs)} / ${fmt(max('firstFrameFromAllMs'))} | ` +
    `${fmt(impaired.framesDecoded)} / ${fmt(min('framesDecoded'))} | ` +
    `${fmt(impaired.freezeCount)} / ${fmt(sum('freezeCount'))} | ` +
    `${fmt(impaired.audioConcealedPercent)} / ${fmt(max('audioConcealedPercent'))} | ${fmt(s.joinSpreadMs)} |`
  );
}

/** One Markdown row per `fec` run: the impaired participant's inbound video. */
function fecRow(options, result) {
  const s = result.summary || { participants: [] };
  const impaired = s.participants.find((p) => p.impaired) || {};
  const clean = s.participants.filter((p) => !p.impaired);
  const sum = (key) => clean.reduce((acc, p) => acc + (p[key] || 0), 0);
  return (
    `| ${options.label} | ${result.ok ? 'pass' : 'FAIL'} | ${fmt(impaired.freezeCount)} | ${fmt(impaired.freezesSeconds)} | ` +
    `${fmt(impaired.framesDecoded)} | ${fmt(impaired.videoPacketsLost)} | ${fmt(impaired.nackCount)} | ` +
    `${fmt(impaired.retransmittedPacketsReceived)} | ${fmt(impaired.fecPacketsReceived)} | ${fmt(impaired.fecPacketsDiscarded)} | ` +
    `${fmt(sum('freezeCount'))} | ${fmt((s.server || {}).fecPacketsSent)} |`
  );
}

const FEC_HEADER = [
  '| run | result | freezes (impaired) | frozen s | frames decoded | video packets lost | NACKs sent | retransmissions received | FEC packets received | FEC packets discarded | freezes, all clean | FEC packets sent (server, all subscribers) |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
];

const HEADER = [
  '| run | recovery | result | server handshakes done/started | DTLS handshake, browser (ms): impaired / slowest clean | server-side (ms): impaired / slowest clean | server DTLS retransmissions | first frame from all others (ms): impaired / slowest clean | frames decoded: impaired / fewest clean | freezes: impaired / all clean | audio concealed (%): impaired / worst clean | join spread (ms) |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  requireNetnsSupport();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = path.resolve(args.out || path.join(__dirname, 'results', stamp));
  fs.mkdirSync(out, { recursive: true });
  process.env.SLUICE_BROWSER_RESULTS = process.env.SLUICE_BROWSER_RESULTS || path.join(out, 'runs');
  const runs = runsFor(args);
  if (args.dtlsVersions) {
    for (const options of runs) {
      options.dtls = { ...options.dtls, versions: args.dtlsVersions };
      options.label += `-dtls${args.dtlsVersions.join('-')}`;
    }
  }
  const rows = [];
  const failedWithRecovery = [];
  const details = [];
  const machine = `${os.cpus().length} x ${os.cpus()[0] && os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}`;
  console.log(`${runs.length} runs, results in ${out} (machine: ${machine})`);
  for (const options of runs) {
    const result = await runCall(options);
    rows.push(args.which === 'fec' ? fecRow(options, result) : summaryRow(options, result));
    details.push(`### ${options.label} (${result.ok ? 'pass' : 'FAIL'}, ${Math.round(result.durationMs / 1000)} s)\n`);
    details.push('```');
    details.push(result.table);
    if (result.summary && result.summary.relayStats) details.push(`relay: ${JSON.stringify(result.summary.relayStats)}`);
    if (!result.ok) details.push(`failures: ${result.failures.join('; ').slice(0, 2000)}`);
    details.push('```\n');
    if (!result.ok && options.dtls.recovery !== false) failedWithRecovery.push(options.label);
    const text = [
      `Browser resilience runs, ${new Date().toISOString()}, ${machine}`,
      `Command: node tests/resilience/browser.js ${process.argv.slice(2).join(' ')}`,
      '',
      ...(args.which === 'fec' ? FEC_HEADER : HEADER),
      ...rows,
      '',
      ...details,
    ].join('\n');
    fs.writeFileSync(path.join(out, 'summary.md'), `${text}\n`);
    if (cleanup.interrupted()) break;
  }
  console.log(fs.readFileSync(path.join(out, 'summary.md'), 'utf8'));
  await cleanup.runAll();
  if (failedWithRecovery.length > 0) {
    console.error(`runs that failed with recovery on: ${failedWithRecovery.join(', ')}`);
    process.exit(1);
  }
}

main().catch(async (error) => {
  console.error(error.stack || error.message);
  await cleanup.runAll();
  process.exit(1);
});
