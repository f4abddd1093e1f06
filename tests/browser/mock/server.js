'use strict';
// A stand-in for `sluice` with the same interface as lib/server.js startServer(): serves the
// real demo page (src/web) and /healthz, and relays every participant's signalling to a hub
// page (mock/hub.js) in its own headless Chromium, which acts as the SFU. Used to check the
// harness end to end while the real server cannot route media: `node mock/run.js`.

const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');

const cleanup = require('../lib/cleanup');
const { freeTcpPort } = require('../lib/ports');
const { launchParticipant } = require('../lib/browser');
const { accept } = require('./ws');

const WEB_DIR = path.resolve(__dirname, '..', '..', '..', 'src', 'web');

async function startMockSfu() {
  const lines = [];
  const logLine = (line) => {
    lines.push(`${new Date().toISOString()} ${line}`);
    if (lines.length > 5000) lines.shift();
  };
  const port = await freeTcpPort();
  const files = {
    '/': ['index.html', 'text/html'],
    '/index.html': ['index.html', 'text/html'],
    '/app.js': ['app.js', 'text/javascript'],
  };
  const server = http.createServer((req, res) => {
    const urlPath = req.url.split('?')[0];
    if (urlPath === '/healthz') return res.end('ok');
    if (urlPath === '/hub.html') {
      res.setHeader('content-type', 'text/html');
      return res.end('<!doctype html><title>hub</title><script src="/hub.js"></script>');
    }
    if (urlPath === '/hub.js') {
      res.setHeader('content-type', 'text/javascript');
      return res.end(fs.readFileSync(path.join(__dirname, 'hub.js')));
    }
    const file = files[urlPath];
    if (!file) {
      res.statusCode = 404;
      return res.end();
    }
    res.setHeader('content-type', file[1]);
    return res.end(fs.readFileSync(path.join(WEB_DIR, file[0])));
  });
  let hub = null;
  const pendingToHub = [];
  const participants = new Map();
  let nextConn = 1;
  const toHub = (m) => (hub ? hub.send(JSON.stringify(m)) : pendingToHub.push(m));
  server.on('upgrade', (req, socket) => {
    const urlPath = req.url.split('?')[0];
    const conn = accept(req, socket);
    if (!conn) return;
    if (urlPath === '/hub') {
      hub = conn;
      for (const m of pendingToHub.splice(0)) hub.send(JSON.stringify(m));
      conn.onMessage = (text) => {
        const m = JSON.parse(text);
        const target = participants.get(m.conn);
        if (!target) return;
        if (m.type === 'send') {
          logLine(`-> ${m.conn} ${m.msg.type}`);
          target.send(JSON.stringify(m.msg));
        } else if (m.type === 'close') target.close();
      };
    } else if (urlPath === '/ws') {
      const id = nextConn++;
      participants.set(id, conn);
      logLine(`ws ${id} open`);
      conn.onMessage = (text) => {
        const msg = JSON.parse(text);
        logLine(`<- ${id} ${msg.type}`);
        toHub({ type: 'message', conn: id, msg });
      };
      conn.onClose = () => {
        logLine(`ws ${id} closed`);
        participants.delete(id);
        toHub({ type: 'disconnect', conn: id });
      };
    } else socket.destroy();
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${port}`;
  const hubBrowser = await launchParticipant('hub');
  await hubBrowser.open(`${url}/hub.html`);

  let stopped = null;
  const stop = () => {
    if (stopped) return stopped;
    stopped = (async () => {
      await hubBrowser.close();
      for (const conn of participants.values()) conn.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      unregister();
      return { code: 0, signal: null };
    })();
    return stopped;
  };
  const unregister = cleanup.register('mock sfu', stop);
  return {
    url,
    httpPort: port,
    mediaPort: 0,
    pid: process.pid,
    exitInfo: null,
    log: { text: () => `${lines.join('\n')}\n`, tail: (n) => lines.slice(-n).join('\n') },
    stop,
    metrics: async () => null,
  };
}

module.exports = { startMockSfu };
