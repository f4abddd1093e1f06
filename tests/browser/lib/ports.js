'use strict';
// Free ports for one test run. The OS picks them (bind to port 0, read, close); the tiny
// window before the server binds them again is acceptable on a test machine, and avoids
// fixed ports that collide with other helpers or parallel runs.

const net = require('node:net');
const dgram = require('node:dgram');

function freeTcpPort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function freeUdpPort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.unref();
    socket.on('error', reject);
    socket.bind({ address: host, port: 0, exclusive: true }, () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

module.exports = { freeTcpPort, freeUdpPort };
