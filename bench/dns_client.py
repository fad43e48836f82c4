#!/usr/bin/env python3
"""bench/dns_client.py: sequential DNS lookups, one outstanding query, for latency percentiles.

  dns_client.py SERVER NAMES_FILE SECONDS     lookups for SECONDS; prints JSON {"us": [...], "errors": N}
  dns_client.py SERVER NAMES_FILE --wait S    exits 0 once one lookup is answered, 1 after S seconds

Each query asks type A for the next name of NAMES_FILE (one per line), over UDP to port 53.
A reply counts when its id and question match and it carries at least one answer; anything
else (timeout, rcode, empty answer) is an error. dnsperf measures the rate; this measures the
time of one exchange with as little client overhead as a blocking socket has (the same client
for every server, so the ratios hold).
"""
import json
import os
import socket
import struct
import sys
import time


def query(qid, name):
    q = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
    return struct.pack('!HHHHHH', qid, 0x0100, 1, 0, 0, 0) + q + struct.pack('!HH', 1, 1)


def answered(reply, sent):
    if len(reply) < 12 or reply[:2] != sent[:2]:
        return False
    flags, _, ancount = struct.unpack('!HHH', reply[2:8])
    return flags & 0x8000 and flags & 0xF == 0 and ancount > 0 and reply[12:len(sent)] == sent[12:]


def main(argv):
    server, names_file, limit = argv[1], argv[2], argv[3]
    names = [n.strip() for n in open(names_file) if n.strip()]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, 53))
    if limit == '--wait':
        deadline = time.monotonic() + float(argv[4])
        s.settimeout(0.1)
        while time.monotonic() < deadline:
            q = query(1, names[0])
            try:
                s.send(q)
                if answered(s.recv(4096), q):
                    return 0
            except OSError:
                time.sleep(0.05)
        return 1
    s.settimeout(1.0)
    us, errors, i = [], 0, 0
    end = time.monotonic() + float(limit)
    qid = int.from_bytes(os.urandom(2), 'big')
    while time.monotonic() < end:
        qid = (qid + 1) & 0xFFFF
        q = query(qid, names[i % len(names)])
        i += 1
        t0 = time.perf_counter_ns()
        s.send(q)
        try:
            reply = s.recv(4096)
        except socket.timeout:
            errors += 1
            continue
        t1 = time.perf_counter_ns()
        if answered(reply, q):
            us.append(round((t1 - t0) / 1000, 1))
        else:
            errors += 1
    print(json.dumps({'us': us, 'errors': errors}))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
