#!/usr/bin/env python3
"""Floods a media port with datagrams from addresses no peer connection has
validated: DTLS ClientHello records, STUN binding requests naming no one's
ICE username fragment, and random bytes, from many source ports, at a given
rate. Used by bench/join-storm.sh to show that such a flood does not stop
real joins (issue 18). Prints how many it sent.

    bench/flood.py HOST:PORT PACKETS_PER_SECOND SECONDS
"""

import os
import signal
import socket
import struct
import sys
import time

SOURCES = 64  # source ports the junk comes from


def client_hello() -> bytes:
    """A DTLS 1.2 record carrying the start of a ClientHello handshake."""
    body = b"\x01" + b"\x00\x00\x40" + b"\x00\x00" + b"\x00\x00\x00" + b"\x00\x00\x40"
    body += b"\xfe\xfd" + os.urandom(32) + b"\x00" + b"\x00" + b"\x00\x02\xc0\x2b\x01\x00"
    body = body.ljust(76, b"\x00")
    return b"\x16\xfe\xff" + b"\x00\x00" + os.urandom(6) + struct.pack("!H", len(body)) + body


def binding_request() -> bytes:
    """A STUN binding request whose USERNAME names a made-up ufrag."""
    user = (os.urandom(4).hex() + ":" + os.urandom(4).hex()).encode()
    pad = (4 - len(user) % 4) % 4
    attrs = struct.pack("!HH", 0x0006, len(user)) + user + b"\x00" * pad
    return struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + os.urandom(12) + attrs


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    target = (host, int(port))
    rate = float(sys.argv[2])
    seconds = float(sys.argv[3])
    socks = []
    for _ in range(SOURCES):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        socks.append(s)
    kinds = [client_hello() for _ in range(64)] + [binding_request() for _ in range(64)]
    kinds += [os.urandom(100 + i * 10) for i in range(32)]
    sent = 0
    start = time.monotonic()
    # Stopped early (the join run is over): still say what was sent.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while time.monotonic() - start < seconds:
            owed = int((time.monotonic() - start) * rate) - sent
            if owed <= 0:
                time.sleep(0.001)
                continue
            for _ in range(min(owed, 1000)):
                try:
                    socks[sent % SOURCES].sendto(kinds[sent % len(kinds)], target)
                except BlockingIOError:
                    pass
                sent += 1
    finally:
        took = time.monotonic() - start
        print(f"flood: sent {sent} datagrams in {took:.1f} s ({sent / took:.0f}/s)", flush=True)

if __name__ == "__main__":
    main()
