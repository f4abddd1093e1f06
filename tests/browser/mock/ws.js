'use strict';
// A minimal RFC 6455 WebSocket server side (text frames, close, ping), enough for the mock
// SFU's JSON signalling. Not for production: no extensions, no fragmented messages.

const crypto = require('node:crypto');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Largest message accepted; larger ones close the connection. */
const MAX_MESSAGE_BYTES = 1 << 20;

function frame(opcode, payload) {
  const length = payload.length;
  let header;
  if (length < 126) {
    header = Buffer.from([0x80 | opcode, length]);
  } else if (length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}

/**
 * Completes the upgrade of `request` on `socket` and returns
 * { send(text), close(), onMessage: fn, onClose: fn }.
 */
function accept(request, socket) {
  const key = request.headers['sec-websocket-key'];
  if (!key) {
    socket.destroy();
    return null;
  }
  const acceptKey = crypto.createHash('sha1').update(key + GUID).digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptKey}\r\n\r\n`,
  );
  socket.setNoDelay(true);
  const conn = {
    onMessage: () => {},
    onClose: () => {},
    closed: false,
    send(text) {
      if (!conn.closed) socket.write(frame(0x1, Buffer.from(text, 'utf8')));
    },
    close() {
      if (conn.closed) return;
      socket.end(frame(0x8, Buffer.from([0x03, 0xe8])));
      finish();
    },
  };
  const finish = () => {
    if (conn.closed) return;
    conn.closed = true;
    conn.onClose();
  };
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      const opcode = buffer[0] & 0x0f;
      const masked = (buffer[1] & 0x80) !== 0;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (length > MAX_MESSAGE_BYTES) {
        socket.destroy();
        finish();
        return;
      }
      const maskOffset = offset;
      if (masked) offset += 4;
      if (buffer.length < offset + length) return;
      const payload = Buffer.from(buffer.subarray(offset, offset + length));
      if (masked) for (let i = 0; i < payload.length; i += 1) payload[i] ^= buffer[maskOffset + (i % 4)];
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x1) conn.onMessage(payload.toString('utf8'));
      else if (opcode === 0x8) {
        conn.close();
        return;
      } else if (opcode === 0x9) socket.write(frame(0xa, payload));
    }
  });
  socket.on('close', finish);
  socket.on('error', finish);
  return conn;
}

module.exports = { accept };
