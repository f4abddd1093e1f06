'use strict';
// Self-tests of the browser harness, independent of whether the server routes media yet:
// the stats analysis (synthetic snapshots), server start/stop, Chromium launch with the
// flags that WebRTC on loopback needs, page load and snapshot, and cleanup on SIGINT.

const { test, describe, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');

const cleanup = require('./lib/cleanup');
const analysis = require('./lib/analysis');
const { startServer, httpGet } = require('./lib/server');
const { launchParticipant, pageSnapshot } = require('./lib/browser');
const { launchFirefoxParticipant } = require('./lib/firefox');
const { createImpairedNetwork, listOurNamespaces, requireNetnsSupport } = require('./lib/netns');

after(() => cleanup.runAll());

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by its parent) is not running.
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitUntil(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const snap = (now, inbound, extra = {}) => ({ now, stats: { inbound }, events: [], tiles: [], mlines: [], ...extra });
const video = (participantId, ssrc, framesDecoded) => ({ kind: 'video', participantId, ssrc, framesDecoded });
const audio = (participantId, ssrc, totalSamplesReceived, bytesReceived) => ({
  kind: 'audio',
  participantId,
  ssrc,
  totalSamplesReceived,
  bytesReceived,
});

describe('analysis', () => {
  test('rising peers are those whose counter advanced on some ssrc', () => {
    const a = snap(0, [video('p1', 1, 10), video('p2', 2, 10), audio('p1', 3, 100, 50)]);
    const b = snap(1000, [video('p1', 1, 30), video('p2', 2, 10), audio('p1', 3, 100, 80)]);
    assert.deepEqual([...analysis.risingPeers(a, b, 'video')], ['p1']);
    assert.deepEqual([...analysis.risingPeers(a, b, 'audio')], ['p1']);
  });

  test('a new ssrc with progress counts as rising, an unowned track never does', () => {
    const a = snap(0, []);
    const b = snap(1000, [video('p1', 7, 3), video(null, 8, 50)]);
    assert.deepEqual([...analysis.risingPeers(a, b, 'video')], ['p1']);
  });

  test('missing media names the peer and the kind that stalled', () => {
    const a = snap(0, [video('p1', 1, 10), audio('p1', 2, 100, 100), video('p2', 3, 5), audio('p2', 4, 0, 0)]);
    const b = snap(1000, [video('p1', 1, 20), audio('p1', 2, 100, 100), video('p2', 3, 9), audio('p2', 4, 0, 10)]);
    assert.deepEqual(analysis.missingMedia(a, b, ['p1', 'p2', 'p3']), [
      { peer: 'p3', kind: 'video' },
      { peer: 'p1', kind: 'audio' },
      { peer: 'p3', kind: 'audio' },
    ]);
  });

  test('a stall in one window of the steady phase is reported with its window', () => {
    const snaps = [];
    for (let s = 0; s <= 15; s += 1) {
      const frames = s <= 5 ? s * 20 : s <= 10 ? 100 : 100 + (s - 10) * 20; // frozen from 5 to 10 s
      snaps.push(snap(s * 1000, [video('p1', 1, frames), audio('p1', 2, s * 480, s * 100)]));
    }
    const failures = analysis.checkWindows(snaps, 0, 15000, 5000, ['p1']);
    assert.equal(failures.length, 1);
    assert.equal(failures[0].from, 5000);
    assert.deepEqual(failures[0].missing, [{ peer: 'p1', kind: 'video' }]);
    assert.deepEqual(analysis.checkWindows(snaps.slice(0, 6), 0, 5000, 5000, ['p1']), []);
  });

  test('time to first frame is per peer, from the first snapshot that decoded one', () => {
    const snaps = [
      snap(1000, [video('p1', 1, 0)]),
      snap(2000, [video('p1', 1, 4), video('p2', 2, 0)]),
      snap(3000, [video('p1', 1, 9), video('p2', 2, 1)]),
    ];
    const first = analysis.timeToFirstFrame(snaps, 500);
    assert.equal(first.get('p1'), 1500);
    assert.equal(first.get('p2'), 2500);
  });

  test('a leaver is gone only with the event, without its tile and with its m-lines inactive', () => {
    const base = {
      events: [{ type: 'participant_left', id: 'p9' }],
      tiles: ['self', 'p1'],
      mlines: [
        { mid: '2', direction: 'inactive', msid: null },
        { mid: '4', direction: 'sendonly', msid: 'p1' },
      ],
    };
    assert.equal(analysis.peerGone(base, 'p9').gone, true);
    assert.match(analysis.peerGone({ ...base, events: [] }, 'p9').reasons.join(), /no participant_left/);
    assert.match(analysis.peerGone({ ...base, tiles: ['p9'] }, 'p9').reasons.join(), /tile/);
    const live = { ...base, mlines: [{ mid: '2', direction: 'sendonly', msid: 'p9' }] };
    assert.match(analysis.peerGone(live, 'p9').reasons.join(), /m-line/);
  });

  test('time to connected comes from the page event log', () => {
    const events = [
      { t: 1200, type: 'connectionstatechange', state: 'connecting' },
      { t: 1900, type: 'connectionstatechange', state: 'connected' },
    ];
    assert.equal(analysis.timeToConnected(events, 1000), 900);
    assert.equal(analysis.timeToConnected(events.slice(0, 1), 1000), null);
  });
});

describe('resilience analysis', () => {
  test('the browser DTLS handshake time runs from connecting to connected', () => {
    const events = [
      { t: 100, type: 'dtls', state: 'new' },
      { t: 900, type: 'ice', state: 'connected' },
      { t: 1000, type: 'dtls', state: 'connecting' },
      { t: 1450, type: 'dtls', state: 'connected' },
    ];
    assert.equal(analysis.dtlsHandshakeTime(events), 450);
    assert.equal(analysis.dtlsHandshakeTime(events.slice(0, 3)), null, 'never connected');
    assert.equal(analysis.dtlsHandshakeTime([]), null);
  });

  test('server handshake times are read per participant from the session log lines', () => {
    const log = [
      '2026-01-01T00:00:00Z  INFO session{participant=3 room=r}: sluice::media::session: DTLS connected handshake_ms=812 profile=SRTP_AEAD_AES_128_GCM',
      '2026-01-01T00:00:01Z  INFO session{participant=4 room=r}: sluice::media::session: DTLS failed reason=timeout',
      '2026-01-01T00:00:02Z  INFO session{participant=3 room=r}: sluice::media::session: DTLS connected handshake_ms=5 profile=x',
    ].join('\n');
    const times = analysis.serverHandshakes(log);
    assert.equal(times.get('3'), 812, 'the first completion counts');
    assert.equal(times.has('4'), false);
  });

  test('a peer counts as never decoded until some ssrc of theirs has a decoded frame', () => {
    const s = snap(0, [video('p1', 1, 0), video('p2', 2, 3), audio('p3', 3, 10, 10)]);
    assert.deepEqual(analysis.neverDecoded(s, ['p1', 'p2', 'p3']), [
      { peer: 'p1', kind: 'video' },
      { peer: 'p3', kind: 'video' },
    ]);
  });

  test('the audio-only window check ignores a video freeze inside the window', () => {
    const snaps = [snap(0, [video('p1', 1, 10), audio('p1', 2, 0, 100)]), snap(5000, [video('p1', 1, 10), audio('p1', 2, 0, 900)])];
    assert.equal(analysis.checkWindows(snaps, 0, 5000, 5000, ['p1'], ['audio']).length, 0);
    assert.deepEqual(analysis.checkWindows(snaps, 0, 5000, 5000, ['p1'])[0].missing, [{ peer: 'p1', kind: 'video' }]);
  });

  test('the join spread comes from the server log lines of that room only', () => {
    const log = [
      '2026-11-27T05:47:53.776761Z  INFO sluice::signaling::connection: participant joined participant=1 room=r1 worker=0',
      '2026-11-27T05:47:53.791145Z  INFO sluice::signaling::connection: participant joined participant=2 room=r1 worker=0',
      '2026-11-27T05:47:59.000000Z  INFO sluice::signaling::connection: participant joined participant=3 room=r2 worker=0',
      '2026-11-27T05:47:53.924951Z  INFO sluice::signaling::connection: participant joined participant=4 room=r1 worker=0',
    ].join('\n');
    assert.equal(analysis.serverJoinSpread(log, 'r1'), 148);
    assert.equal(analysis.serverJoinSpread(log, 'r2'), null);
  });

  test('a metric family is summed over its label sets and absent is null', () => {
    const text = [
      '# TYPE sluice_dtls_handshakes_failed counter',
      'sluice_dtls_handshakes_failed_total{reason="timeout"} 2',
      'sluice_dtls_handshakes_failed_total{reason="aborted"} 1',
      'sluice_dtls_handshakes_failed_total_extra 9',
      'sluice_dtls_retransmissions_total 17',
    ].join('\n');
    assert.equal(analysis.metricValue(text, 'sluice_dtls_handshakes_failed_total'), 3);
    assert.equal(analysis.metricValue(text, 'sluice_dtls_retransmissions_total'), 17);
    assert.equal(analysis.metricValue(text, 'sluice_nothing_total'), null);
    assert.equal(analysis.metricValue(null, 'x'), null);
  });
});

describe('impaired network', () => {
  test('the namespace, veth pair and tbf exist while in use and are gone after teardown', { timeout: 30000 }, () => {
    requireNetnsSupport(); // not root: fails with the reason
    const net = createImpairedNetwork({ upRateKbit: 225, downRateKbit: 5000 });
    try {
      assert.ok(listOurNamespaces().includes(net.name));
      const qdisc = execFileSync('ip', ['netns', 'exec', net.name, 'tc', 'qdisc', 'show', 'dev', net.nsIf], { encoding: 'utf8' });
      assert.match(qdisc, /tbf .*rate 225Kbit/);
      const addr = execFileSync('ip', ['-4', '-o', 'addr', 'show', 'dev', net.hostIf], { encoding: 'utf8' });
      assert.ok(addr.includes(`${net.hostAddr}/30`));
    } finally {
      net.teardown();
    }
    assert.equal(listOurNamespaces().includes(net.name), false, 'namespace deleted');
    assert.equal(spawnSync('ip', ['link', 'show', net.hostIf], { stdio: 'ignore' }).status !== 0, true, 'host veth gone');
  });
});

describe('server and browser', () => {
  test('the server starts on free ports with the scenario config and stops cleanly', { timeout: 30000 }, async () => {
    const server = await startServer({ dtlsRole: 'client' });
    const dir = path.dirname(server.configPath);
    const config = fs.readFileSync(server.configPath, 'utf8');
    assert.match(config, /role: client/);
    assert.match(config, new RegExp(`listen: "127.0.0.1:${server.mediaPort}"`));
    const health = await httpGet(`${server.url}/healthz`, 2000);
    assert.equal(health.status, 200);
    const page = await httpGet(`${server.url}/`, 2000);
    assert.match(page.body, /app\.js/);
    assert.ok(alive(server.pid));
    await server.stop();
    assert.equal(alive(server.pid), false);
    assert.equal(fs.existsSync(dir), false);
  });

  test('chromium loads the demo page, has fake media and gathers a loopback candidate', { timeout: 60000 }, async () => {
    const server = await startServer({ dtlsRole: 'auto' });
    const browser = await launchParticipant('selftest');
    try {
      assert.ok(browser.pids.length >= 1, 'browser process found by its profile dir');
      await browser.open(`${server.url}/?room=selftest&name=selftest`);
      const first = await browser.page.evaluate(pageSnapshot);
      assert.equal(first.state, 'idle');
      assert.equal(first.stats.connectionState, 'none');

      const media = await browser.page.evaluate(async () => {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
        const tracks = stream.getTracks().map((t) => `${t.kind}:${t.readyState}`);
        stream.getTracks().forEach((t) => t.stop());
        return tracks.sort();
      });
      assert.deepEqual(media, ['audio:live', 'video:live']);

      const candidates = await browser.page.evaluate(async () => {
        const pc = new RTCPeerConnection({ iceServers: [] });
        pc.createDataChannel('probe');
        const found = [];
        const done = new Promise((resolve) => {
          pc.onicecandidate = (e) => (e.candidate ? found.push(e.candidate.candidate) : resolve());
          setTimeout(resolve, 5000);
        });
        await pc.setLocalDescription(await pc.createOffer());
        await done;
        pc.close();
        return found;
      });
      assert.ok(
        candidates.some((c) => / 127\.0\.0\.1 \d+ typ host/.test(c)),
        `a 127.0.0.1 host candidate (needs --allow-loopback-in-peer-connection); got ${JSON.stringify(candidates)}`,
      );

      // The page's join reaches the server's signalling endpoint and the page logs the answer.
      await browser.page.click('#join');
      const deadline = Date.now() + 10000;
      let snapshot;
      do {
        await new Promise((resolve) => setTimeout(resolve, 200));
        snapshot = await browser.page.evaluate(pageSnapshot);
      } while (!snapshot.events.some((e) => e.type === 'ws_open') && Date.now() < deadline);
      assert.ok(snapshot.events.some((e) => e.type === 'ws_open'), `ws_open in ${JSON.stringify(snapshot.events)}`);
    } finally {
      await browser.close();
      await server.stop();
    }
    assert.equal(browser.pids.some(alive), false, 'browser process gone after close');
    assert.equal(fs.existsSync(browser.userDataDir), false, 'profile dir removed after close');
  });

  test('SIGINT tears down the server, the browsers and their temp dirs', { timeout: 60000 }, async () => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'hold.js')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanup.trackPid(child.pid);
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    await waitUntil(() => out.includes('\n') || child.exitCode !== null, 45000, `fixture start (stderr: ${err})`);
    const started = JSON.parse(out.split('\n')[0]);
    assert.ok(alive(started.serverPid));
    assert.ok(started.browserPids.length >= 1 && started.browserPids.every(alive));

    child.kill('SIGINT');
    const exit = await exited;
    cleanup.untrackPid(child.pid);
    assert.equal(exit.code, 130, `fixture exit ${JSON.stringify(exit)}; stderr: ${err}`);
    await waitUntil(() => !alive(started.serverPid) && !started.browserPids.some(alive), 5000, 'processes to go');
    assert.equal(fs.existsSync(started.serverDir), false, 'server temp dir removed');
    assert.equal(fs.existsSync(started.browserDir), false, 'browser profile dir removed');
  });
});

describe('firefox', () => {
  test('firefox in its namespace loads the page, has fake media, gathers only its veth address and leaves nothing behind', { timeout: 60000 }, async () => {
    requireNetnsSupport(); // not root: fails with the reason
    const net = createImpairedNetwork({ defaultRoute: true });
    const server = await startServer({ httpHost: net.hostAddr, mediaHost: net.hostAddr, announce: [net.hostAddr] });
    let fox = null;
    try {
      fox = await launchFirefoxParticipant('selftest', { net });
      assert.ok(fox.pids.every(alive), 'firefox and the forwarder run');
      await fox.open(`${server.url}/?room=selftest&name=selftest`);
      const first = await fox.page.evaluate(pageSnapshot);
      assert.equal(first.state, 'idle');

      // The page's origin (plain http on the veth address) counts as secure: fake devices.
      const media = await fox.page.evaluate(async () => {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
        const tracks = stream.getTracks().map((t) => `${t.kind}:${t.readyState}`);
        stream.getTracks().forEach((t) => t.stop());
        return tracks.sort();
      });
      assert.deepEqual(media, ['audio:live', 'video:live']);

      const candidates = await fox.page.evaluate(async () => {
        const pc = new RTCPeerConnection({ iceServers: [] });
        pc.createDataChannel('probe');
        const found = [];
        const done = new Promise((resolve) => {
          pc.onicecandidate = (e) => (e.candidate ? found.push(e.candidate.candidate) : resolve());
        });
        await pc.setLocalDescription(await pc.createOffer());
        await done;
        pc.close();
        return found.filter(Boolean);
      });
      const udp = candidates.filter((c) => / udp /i.test(c));
      assert.ok(udp.length > 0, `a UDP host candidate (needs the default route); got ${JSON.stringify(candidates)}`);
      for (const c of udp) assert.ok(c.includes(` ${net.nsAddr} `), `only the veth address: ${c}`);
    } finally {
      if (fox) await fox.close();
      await server.stop();
      net.teardown();
    }
    assert.equal(fox.pids.some(alive), false, 'firefox and the forwarder are gone');
    assert.equal(fs.existsSync(fox.profileDir), false, 'profile removed');
    assert.equal(listOurNamespaces().includes(net.name), false, 'namespace deleted');
  });
});
