#!/usr/bin/env python3
"""bench/mem_whatif_keys.py - what other key layouts would cost, on a namespace's real data (issue 10).

    bench/mem_whatif_keys.py --port P --prefix n1: [--min-events 9 --max-events 11]

For each customer with that many records in :d, copies its keys into scratch keys
(x:{<customer>}:*) shaped another way, reads MEMORY USAGE (SAMPLES 0) and deletes them again:
  now          :p + :d + :l + :c as they are
  p pieces     :p alone as a fresh hash with the profile in pieces of 64 bytes (layout 7)
  p + string   :p without the profile, the profile in a string key of its own
  one key      one hash: the profile in pieces, v/hw/tf/tn, the records ("d" + id), the ledger
               entries ("l" + n)
  d+l one hash :d's records and :l's entries in one hash (:p apart)
WRITES scratch keys: run it only on a throwaway server (bench/mem.sh --keep's AOF, restarted).
RESP over a socket, no client library.
"""
import argparse
from resp import Redis



def pieces(b, n=64):
    out = []
    for i in range(0, max(len(b), 1), n):
        out += [b"p" if i == 0 else b"p%d" % (i // n), b[i:i + n]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", default="n1:")
    ap.add_argument("--min-events", type=int, default=9)
    ap.add_argument("--max-events", type=int, default=11)
    a = ap.parse_args()
    r = Redis(a.host, a.port)
    pre = a.prefix.encode()
    keys, cur = [], b"0"
    while True:
        cur, k = r.cmd("SCAN", cur, "MATCH", pre + b"{*}:p", "COUNT", 1000)
        keys += k
        if cur == b"0":
            break
    mu = lambda k: r.cmd("MEMORY", "USAGE", k, "SAMPLES", 0) or 0
    rows = {}
    for k in sorted(keys):
        c = k[len(pre) + 1:-3]
        kp = pre + b"{" + c + b"}:"
        if not a.min_events <= r.cmd("HLEN", kp + b"d") <= a.max_events:
            continue
        h = r.cmd("HGETALL", kp + b"p")
        hd = dict(zip(h[::2], h[1::2]))
        prof = b"".join(hd[f] for f in [b"p"] + [b"p%d" % i for i in range(1, 1000) if b"p%d" % i in hd])
        small = [x for f in (b"v", b"hw", b"tf", b"tn") if f in hd for x in (f, hd[f])]
        d = r.cmd("HGETALL", kp + b"d")
        ledger = r.cmd("LRANGE", kp + b"l", 0, -1)
        x = b"x:{" + c + b"}:"
        got = {"now": sum(mu(kp + s) for s in (b"p", b"d", b"l", b"c"))}
        r.cmd("DEL", x + b"p")
        r.cmd("HSET", x + b"p", *(small + pieces(prof)))
        got["p pieces"] = mu(x + b"p")
        r.cmd("DEL", x + b"p")
        r.cmd("HSET", x + b"p", *small)
        r.cmd("SET", x + b"s", prof)
        got["p + string"] = mu(x + b"p") + mu(x + b"s")
        r.cmd("DEL", x + b"p", x + b"s")
        one = small + pieces(prof)
        for f, v in zip(d[::2], d[1::2]):
            one += [b"d" + f, v]
        for i, e in enumerate(ledger):
            one += [b"l%d" % i, e]
        r.cmd("HSET", x + b"p", *one)
        got["one key"] = mu(x + b"p")
        r.cmd("DEL", x + b"p")
        dl = list(d) + [v for i, e in enumerate(ledger) for v in (b"\0%d" % i, e)]
        got["d+l one hash"] = 0
        if dl:
            r.cmd("HSET", x + b"d", *dl)
            got["d+l one hash"] = mu(x + b"d")
            r.cmd("DEL", x + b"d")
        got["d + l now"] = mu(kp + b"d") + mu(kp + b"l")
        for n, v in got.items():
            rows.setdefault(n, []).append(v)
    if not rows:
        raise SystemExit("mem_whatif_keys: no customer with %d-%d records under %r" % (a.min_events, a.max_events, a.prefix))
    print("%d customers with %d-%d records in :d; mean bytes (MEMORY USAGE SAMPLES 0)"
          % (len(rows["now"]), a.min_events, a.max_events))
    for n, v in rows.items():
        print("%-14s %8.0f" % (n, sum(v) / len(v)))


if __name__ == "__main__":
    main()
