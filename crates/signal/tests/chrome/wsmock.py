# Minimal HTTP + WebSocket mock of the Sluice signalling server, for checking app.js.
import base64, hashlib, json, os, socket, struct, threading
HERE = os.path.dirname(os.path.abspath(__file__))
WEB = os.path.join(HERE, '../../../../src/web/')
offers = json.load(open(os.path.join(HERE, 'offers.json')))
answers = {}
log = open(os.path.join(HERE, 'wsmock.log'), 'w')

def send_frame(conn, text):
    data = text.encode()
    hdr = bytes([0x81])
    n = len(data)
    if n < 126: hdr += bytes([n])
    elif n < 65536: hdr += bytes([126]) + struct.pack('>H', n)
    else: hdr += bytes([127]) + struct.pack('>Q', n)
    conn.sendall(hdr + data)

def recv_exact(f, n):
    b = f.read(n)
    if len(b) < n: raise EOFError
    return b

def recv_frame(f):
    b0, b1 = recv_exact(f, 2)
    op = b0 & 0x0f; n = b1 & 0x7f
    if n == 126: n = struct.unpack('>H', recv_exact(f, 2))[0]
    elif n == 127: n = struct.unpack('>Q', recv_exact(f, 8))[0]
    mask = recv_exact(f, 4)
    data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(f, n)))
    return op, data

def ws_session(conn, f):
    def out(msg):
        log.write('>> ' + msg['type'] + ' ' + str(msg.get('revision', '')) + '\n'); log.flush()
        send_frame(conn, json.dumps(msg))
    script = {
        1: [{'type': 'participant_joined', 'id': 'bob', 'name': 'Bob'}],
        2: [{'type': 'participant_left', 'id': 'alice'}],
        3: [{'type': 'participant_joined', 'id': 'carol', 'name': 'Carol'}],
    }
    while True:
        op, data = recv_frame(f)
        if op == 8: return
        if op != 1: continue
        msg = json.loads(data)
        log.write('<< ' + msg['type'] + ' ' + str(msg.get('revision', '')) + '\n'); log.flush()
        if msg['type'] == 'join':
            out({'type': 'joined', 'participant_id': 'me', 'room': msg['room'],
                 'participants': [{'id': 'alice', 'name': 'Alice <b>'}]})
            out({'type': 'offer', 'revision': 1, 'sdp': offers[0]})
        elif msg['type'] == 'answer':
            rev = msg['revision']; answers[rev] = msg['sdp']
            json.dump([answers[k] for k in sorted(answers)], open(os.path.join(HERE, 'page_answers.json'), 'w'))
            for m in script.get(rev, []): out(m)
            if rev < len(offers): out({'type': 'offer', 'revision': rev + 1, 'sdp': offers[rev]})
            else: out({'type': 'error', 'code': 'internal', 'message': 'test error display'})

def handle(conn):
    f = conn.makefile('rb')
    req = f.readline().decode()
    if len(req.split()) < 2:
        conn.close()
        return
    headers = {}
    while True:
        line = f.readline().decode().strip()
        if not line: break
        k, v = line.split(':', 1); headers[k.lower()] = v.strip()
    path = req.split()[1]
    if path.startswith('/ws'):
        acc = base64.b64encode(hashlib.sha1((headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest()).decode()
        conn.sendall(('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' % acc).encode())
        try: ws_session(conn, f)
        except EOFError: pass
    else:
        name = 'app.js' if path.startswith('/app.js') else 'index.html'
        body = open(WEB + name, 'rb').read()
        ctype = 'text/javascript' if name == 'app.js' else 'text/html'
        conn.sendall(('HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' % (ctype, len(body))).encode() + body)
    conn.close()

s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 18766)); s.listen(8)
while True:
    c, _ = s.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
