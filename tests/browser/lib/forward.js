'use strict';
// A TCP forwarder, run inside a network namespace (`ip netns exec NS node forward.js
// LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT`): Firefox's remote agent only ever
// listens on the namespace's own loopback, so the test (on the host) reaches its WebDriver
// BiDi WebSocket through this, on the namespace's veth address. Prints "listening" once
// bound; runs until SIGTERM.

const net = require('node:net');

const [listenHost, listenPort, targetHost, targetPort] = process.argv.slice(2);

const server = net.createServer((client) => {
  const upstream = net.connect(Number(targetPort), targetHost);
  client.pipe(upstream);
  upstream.pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
});
server.on('error', (error) => {
  process.stderr.write(`forward: ${error.message}\n`);
  process.exit(1);
});
server.listen(Number(listenPort), listenHost, () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
