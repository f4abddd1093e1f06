#!/usr/bin/env python3
"""Writes the committed seed inputs of every fuzz target into fuzz/seeds/<target>/.

Seeds are realistic inputs in each target's input format (see the doc comment at the top
of fuzz/fuzz_targets/<target>.rs). Sources:
  - crates/dtls/tests/vectors/chromium156-clienthello-datagram{1,2}.bin (captured Chromium);
  - fuzz/seeds/raw/delivery{0..3}-datagram0.bin: the four flights of one sluice-dtls
    handshake (client flight 1, server flight 4, client flight 5, server flight 6) with
    freshly generated P-256 certificates, captured once;
  - crates/signal/tests/data/chrome148_answers.json (Chrome answers);
  - STUN, RTP and RTCP packets built here the way Chrome sends them.
Run from anywhere: python3 fuzz/seeds/make_seeds.py
"""

import hashlib
import hmac
import json
import os
import struct
import zlib
import base64

FUZZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(FUZZ)
SEEDS = os.path.join(FUZZ, "seeds")

LOCAL_UFRAG, LOCAL_PWD, REMOTE_UFRAG = "srvU", "serverPasswordOf24Chars/", "brws"


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def frames(*items):
    out = b""
    for control, data in items:
        out += bytes([control]) + struct.pack(">H", len(data)) + data
    return out


# ---- STUN ----
def attr(t, v):
    pad = (4 - len(v) % 4) % 4
    return struct.pack(">HH", t, len(v)) + v + b"\0" * pad


def stun_header(body_len, txid):
    return struct.pack(">HHI", 0x0001, body_len, 0x2112A442) + txid


def seal(msg, pwd):
    body = msg[20:]
    m = stun_header(len(body) + 24, msg[8:20]) + body
    tag = hmac.new(pwd.encode(), m, hashlib.sha1).digest()
    m = stun_header(len(body) + 24 + 8, msg[8:20]) + body + attr(0x0008, tag)
    fp = (zlib.crc32(m) ^ 0x5354554E) & 0xFFFFFFFF
    return m + attr(0x8028, struct.pack(">I", fp))


def chrome_check_attributes(nominate):
    a = attr(0x802A, struct.pack(">Q", 0x1122334455667788))  # ICE-CONTROLLING
    a += attr(0x0024, struct.pack(">I", 1845501695))  # PRIORITY
    if nominate:
        a += attr(0x0025, b"")  # USE-CANDIDATE
    return a


def chrome_check(nominate, txid=b"\x07" * 12):
    body = attr(0x0006, f"{LOCAL_UFRAG}:{REMOTE_UFRAG}".encode()) + chrome_check_attributes(nominate)
    return seal(stun_header(len(body), txid) + body, LOCAL_PWD)


# ---- RTP / RTCP ----
def rtp(pt, seq, ts, ssrc, payload, exts=(), marker=False):
    x = 0x10 if exts else 0
    p = bytes([0x80 | x, (0x80 if marker else 0) | pt]) + struct.pack(">HII", seq, ts, ssrc)
    if exts:
        body = b""
        for i, d in exts:
            body += bytes([(i << 4) | (len(d) - 1)]) + d
        body += b"\0" * ((4 - len(body) % 4) % 4)
        p += struct.pack(">HH", 0xBEDE, len(body) // 4) + body
    return p + payload


VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01])
VP8_DELTA = bytes([0x10, 0x01, 0xCC, 0xDD, 0xEE])
OPUS = bytes([0xF8, 0xFF, 0xFE, 0x01])
H264_IDR = bytes([0x7C, 0x85, 0x88, 0x84])  # FU-A start of an IDR slice
H264_STAPA = bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])


def rtcp_header(count, pt, body):
    return bytes([0x80 | count, pt]) + struct.pack(">H", len(body) // 4) + body


def sr(ssrc):
    body = struct.pack(">IIIIII", ssrc, 0xE7A0_0000, 0x1234_5678, 90000, 100, 12000)
    return rtcp_header(0, 200, body)


def rr(ssrc, media):
    block = struct.pack(">IIIIII", media, 0x0100_0002, 0x0001_0010, 20, 0, 0)
    return rtcp_header(1, 201, struct.pack(">I", ssrc) + block)


def sdes(ssrc, cname):
    item = bytes([1, len(cname)]) + cname + b"\0"
    chunk = struct.pack(">I", ssrc) + item
    chunk += b"\0" * ((4 - len(chunk) % 4) % 4)
    return rtcp_header(1, 202, chunk)


def nack(sender, media, pid, blp):
    return rtcp_header(1, 205, struct.pack(">IIHH", sender, media, pid, blp))


def pli(sender, media):
    return rtcp_header(1, 206, struct.pack(">II", sender, media))


def fir(sender, target):
    return rtcp_header(4, 206, struct.pack(">IIII", sender, 0, target, 0x0100_0000))


def remb(sender, ssrcs):
    body = struct.pack(">II", sender, 0) + b"REMB" + bytes([len(ssrcs), 0x0C, 0x35, 0x00])
    body += b"".join(struct.pack(">I", s) for s in ssrcs)
    return rtcp_header(15, 206, body)


def twcc_feedback(sender, media):
    # base 10, 5 packets, ref time 1, fb count 0; a 2-bit vector chunk: 4 small, 1 lost; deltas
    chunk = 0xC000 | (1 << 12) | (1 << 10) | (1 << 8) | (1 << 6)
    body = struct.pack(">IIHH", sender, media, 10, 5) + bytes([0, 0, 1, 0])
    body += struct.pack(">H", chunk) + bytes([4, 8, 4, 40])
    body += b"\0" * ((4 - len(body) % 4) % 4)
    return rtcp_header(15, 205, body)


def bye(ssrc):
    return rtcp_header(1, 203, struct.pack(">I", ssrc) + bytes([6]) + b"leave!" + b"\0")


# ---- tokens ----
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


KEY1 = b"0123456789abcdef0123456789abcdef"


def token(claims, kid="k1", key=KEY1):
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    t = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return t + "." + b64(hmac.new(key, t.encode(), hashlib.sha256).digest())


def main():
    vectors = os.path.join(ROOT, "crates", "dtls", "tests", "vectors")
    ch1 = read(os.path.join(vectors, "chromium156-clienthello-datagram1.bin"))
    ch2 = read(os.path.join(vectors, "chromium156-clienthello-datagram2.bin"))
    raw = [read(os.path.join(SEEDS, "raw", f"delivery{i}-datagram0.bin")) for i in range(4)]
    opus = rtp(111, 1, 960, 0xA1, OPUS, [(1, b"0"), (3, b"\x00\x01")])
    vp8 = rtp(96, 7, 9000, 0xA2, VP8_KEY, [(1, b"1"), (3, b"\x00\x02")], marker=True)
    compound = sr(0xA1) + sdes(0xA1, b"InnmEsr0DcLLBeBl")
    feedback = rr(0xB0, 0x0A02) + nack(0xB0, 0x0A02, 7, 0x0003) + pli(0xB0, 0x0A02)

    # demux
    write("demux", "stun-check", chrome_check(True))
    write("demux", "dtls-chromium-clienthello", ch1)
    write("demux", "rtp-opus", opus)
    write("demux", "rtcp-compound", compound)

    # stun: flags, then frames [control][len][bytes]
    write("stun", "raw-check", b"\x00" + frames((0, chrome_check(False)), (0, chrome_check(True))))
    write("stun", "sealed-attributes", b"\x01" + frames((1, chrome_check_attributes(True)),
                                                          (0x25, chrome_check_attributes(False))))
    write("stun", "sealed-controlled", b"\x00" + frames((1, attr(0x8029, b"\1" * 8)),
                                                          (0xE1, chrome_check_attributes(True))))

    # dtls_server: stage 0, then the Chromium ClientHello; and the real flight 1 / 5
    write("dtls_server", "chromium-clienthello", b"\x00" + frames((0, ch1), (0, ch2)))
    write("dtls_server", "chromium-clienthello-then-run", b"\x10" + frames((0, ch1), (0, ch2)))
    write("dtls_server", "stale-flight1-after-flight1", b"\x01" + frames((0, raw[0]), (100, raw[0])))
    write("dtls_server", "stale-flight5-after-flight4", b"\x02" + frames((0, raw[2])))
    write("dtls_server", "timeouts-connected", b"\x14" + frames((250, b""), (255, raw[2])))
    # dtls_client: a server flight 4 / flight 6 from another handshake at each stage
    write("dtls_client", "foreign-flight4", b"\x01" + frames((0, raw[1])))
    write("dtls_client", "foreign-flight6", b"\x03" + frames((0, raw[3]), (90, raw[3])))
    write("dtls_client", "hello-verify-stage", b"\x09" + frames((0, raw[1])))
    write("dtls_client", "retransmit-timeouts", b"\x10" + frames((80, b""), (160, b""), (210, b"")))
    # dtls_mutate: [selector][ops of 4 bytes]
    write("dtls_mutate", "untouched-flight4", b"\x01")
    write("dtls_mutate", "fragment-offset-flight4", b"\x01" + bytes([2, 0, 1, 0x10]))
    write("dtls_mutate", "header-flip-flight1", b"\x00" + bytes([1, 0, 20, 0x01]))
    write("dtls_mutate", "duplicate-swap-flight5", b"\x02" + bytes([4, 0, 0, 0, 6, 0, 0, 0]))
    write("dtls_mutate", "truncate-flight6", b"\x03" + bytes([3, 0, 40, 0]))
    write("dtls_mutate", "hello-verify-cookie", b"\x09" + bytes([0, 0, 30, 0x80]))

    # rtp: one packet
    write("rtp", "opus-mid-twcc", opus)
    write("rtp", "vp8-keyframe", vp8)
    padded = bytearray(rtp(102, 3, 3000, 0xA2, H264_IDR + b"\0\0\3", [(3, b"\0\5")]))
    padded[0] |= 0x20  # P bit: the last 3 bytes are padding
    write("rtp", "h264-idr-padding", bytes(padded))
    write("rtp", "h264-stap-a", rtp(102, 4, 3000, 0xA2, H264_STAPA))
    two_byte = bytes([0x90, 96]) + struct.pack(">HII", 9, 1, 0xA2) + struct.pack(">HH", 0x1000, 1) \
        + bytes([1, 1, ord("1"), 0]) + VP8_DELTA
    write("rtp", "two-byte-extensions", two_byte)
    # rtcp: mode byte, then datagram or TWCC program
    write("rtcp", "sr-sdes", b"\x00" + compound)
    write("rtcp", "rr-nack-pli", b"\x00" + feedback)
    write("rtcp", "fir-remb-bye", b"\x00" + fir(0xB0, 0x0A02) + remb(0xB0, [0x0A01, 0x0A02]) + bye(0xB0))
    write("rtcp", "twcc-feedback", b"\x00" + twcc_feedback(0xB0, 0xA2))
    program = b"".join(struct.pack(">HB", s, dt) for s, dt in
                       [(1, 0), (2, 5), (4, 5), (3, 1), (5, 20), (6, 255), (7, 3), (65535, 2), (0, 1)])
    write("rtcp", "twcc-program", b"\x21" + program)

    # bwe: frames; control bits 0-2 step, bits 3-7 time in 5 ms steps (fuzz_targets/bwe.rs)
    rounds = [(4, struct.pack(">I", 2_000_000))]
    for r in range(40):
        rounds.append((0 | (2 << 3), bytes([201, 202, 203, 204, 206, 207, 208, 209, 211, 212])))
        rounds.append((5, bytes([2, 6, 10, 0, 1, 14])))
        rounds.append((6, b""))
        if r % 5 == 4:
            rounds.append((2, b""))
    write("bwe", "steady-sender", frames(*rounds))
    write("bwe", "raw-feedback", frames((0, bytes(range(1, 60))), (3 | (10 << 3), twcc_feedback(0xB0, 0xA2))))

    # router: frames [control][len][bytes]; control bit 3 = structured RTP
    write("router", "forwarding", frames(
        (0x00, opus), (0x10, vp8), (0x11, rtp(111, 1, 960, 0xB1, OPUS)),
        (0x25, feedback), (0x16, fir(0xC0, 0x0C02) + remb(0xC0, [0x0C02])),
        (0x04, compound), (0x38, bytes([0x81, 0x0B, 0, 9, 0, 0, 0x23, 0x28, 0x11]) + VP8_KEY),
        (0xF1, rtp(97, 3, 9000, 0xA3, b"\0\7" + VP8_DELTA, [(1, b"1")])),
    ))

    # sdp: Chrome answers
    with open(os.path.join(ROOT, "crates", "signal", "tests", "data", "chrome148_answers.json")) as f:
        for i, answer in enumerate(json.load(f)):
            write("sdp", f"chrome148-answer-{i}", answer.encode())

    # signaling: mode byte, then text
    join = {"type": "join", "room": "standup", "name": "Zoë 🙂",
            "token": token({"room": "standup", "sub": "ada", "exp": 1_800_000_600, "name": "Ada"})}
    write("signaling", "join", b"\x00" + json.dumps(join, ensure_ascii=False).encode())
    write("signaling", "answer", b"\x00" + json.dumps({"type": "answer", "revision": 1, "sdp": "v=0\r\n"}).encode())
    write("signaling", "ping", b"\x00" + b'{"type":"ping"}')
    write("signaling", "token", b"\x01" + token({"room": "r", "sub": "s", "exp": 1_800_000_600, "nbf": 1}).encode())
    write("signaling", "signed-json", b"\x02" + b'{"alg":"HS256","kid":"k1"}\n{"room":"r","sub":"s","exp":1800000600}')
    write("signaling", "roundtrip-claims", b"\x03" + "standup\0ada\0Ada Lovelace".encode())


if __name__ == "__main__":
    main()
