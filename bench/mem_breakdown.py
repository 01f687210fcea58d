#!/usr/bin/env python3
"""bench/mem_breakdown.py - where a namespace's Redis bytes go, per customer (issue 10).

    bench/mem_breakdown.py [--host H --port P | --unix PATH] [--prefix fidelio:] [--sample N]

Reads only. Takes N customers with a profile (<prefix>{c}:p), evenly spaced in the sorted ids
(the same customers in every namespace holding the same data), and
for each of them: MEMORY USAGE (SAMPLES 0: every element counted) of its keys :p, :d, :c, :l
and :t, their encodings, and the payload bytes inside them: in :p the profile (p), the kept
outputs (o<k><id> fields and po) and the small fields (v, hw, tf, tn); in :d and :c the
records (field + value bytes); in :l the ledger entries. (Layout 7 keeps the profile in
pieces p, p1, p2, ... of 64 bytes: all of them count as the profile.) What is left of MEMORY USAGE over the
payload is Redis's own overhead (key, object, listpack/quicklist headers, entry headers).
Prints one table of means per customer and the distribution of events in :d. Needs no
client library: RESP over a socket. --drop-kept-outputs (a what-if for a throwaway server: it
WRITES) first deletes the sampled customers' kept outputs, as if none were kept at rest;
--short-records rewrites their dedupe records as a tag, 8 bytes of digest and a varint time.
"""
import argparse
from resp import Redis
import statistics
import sys



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--unix")
    ap.add_argument("--prefix", default="fidelio:")
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--short-records", action="store_true",
                    help="WRITES: rewrite the sampled customers' :d records shorter first (a what-if)")
    ap.add_argument("--drop-kept-outputs", action="store_true",
                    help="WRITES: delete the sampled customers' kept outputs first (a what-if on a throwaway server)")
    a = ap.parse_args()
    r = Redis(a.host, a.port, a.unix)
    pre = a.prefix.encode()
    custs, cur = [], b"0"
    while True:
        cur, keys = r.cmd("SCAN", cur, "MATCH", pre + b"{*}:p", "COUNT", 1000)
        custs += [k[len(pre) + 1:-3] for k in keys]
        if cur == b"0":
            break
    custs.sort()  # the same customers in every namespace of the same data
    if len(custs) > a.sample:
        custs = [custs[i * len(custs) // a.sample] for i in range(a.sample)]
    if not custs:
        sys.exit("mem_breakdown: no customer under prefix %r" % a.prefix)
    if a.drop_kept_outputs or a.short_records:
        print("(what-if on a throwaway server: it WRITES)")
    if a.drop_kept_outputs:  # what-if: every customer's kept outputs gone (writes: bench/mem.sh's own server)
        for c in custs:
            k = pre + b"{" + c + b"}:p"
            fs = [f for f in (r.cmd("HKEYS", k) or []) if f[:1] == b"o" or f == b"po"]
            if fs:
                r.cmd("HDEL", k, *fs)
        print("(what-if: the kept outputs of these customers deleted: o<k><id> and po of :p)")
    if a.short_records:  # what-if: dedupe records of a tag, an 8-byte digest and the time as a varint
        for c in custs:
            k = pre + b"{" + c + b"}:d"
            d = r.cmd("HGETALL", k) or []
            args = []
            for f, v in zip(d[::2], d[1::2]):
                if v[:1] == b"\x04" and len(v) > 17:
                    t, out = int(v[17:]), bytearray()
                    u = t << 1
                    while True:
                        out.append((u & 0x7F) | (0x80 if u > 0x7F else 0))
                        u >>= 7
                        if not u:
                            break
                    args += [f, b"\x05" + v[1:9] + bytes(out)]
            if args:
                r.cmd("HSET", k, *args)
        print("(what-if: their :d records rewritten as a tag, 8 bytes of digest and the event time as a varint)")
    rows = {}

    def add(name, v):
        rows.setdefault(name, []).append(v)

    encs, nd, nl, penc = {}, [], [], []
    for c in custs:
        k = pre + b"{" + c + b"}:"
        tot = 0
        for suf in (b"p", b"d", b"c", b"l", b"t"):
            mu = r.cmd("MEMORY", "USAGE", k + suf, "SAMPLES", 0) or 0
            add("key " + suf.decode(), mu)
            tot += mu
            if mu:
                e = r.cmd("OBJECT", "ENCODING", k + suf)
                encs[(suf.decode(), e)] = encs.get((suf.decode(), e), 0) + 1
                if suf == b"p":
                    penc.append(e)
        add("all keys", tot)
        h = r.cmd("HGETALL", k + b"p") or []
        prof = outs = small = 0
        for f, v in zip(h[::2], h[1::2]):
            if f == b"p" or (f[:1] == b"p" and f[1:].isdigit()):  # layout 7: the profile in pieces p, p1, ...
                prof += len(f) + len(v)
            elif f[:1] == b"o" or f == b"po":
                outs += len(f) + len(v)
            else:
                small += len(f) + len(v)
        add("  :p profile (p)", prof)
        add("  :p kept outputs (o<k><id>, po)", outs)
        add("  :p v, hw, tf, tn", small)
        add("  :p overhead", rows["key p"][-1] - prof - outs - small)
        d = r.cmd("HGETALL", k + b"d") or []
        dp = sum(len(x) for x in d)
        nd.append(len(d) // 2)
        add("  :d records (id + record)", dp)
        add("  :d overhead", rows["key d"][-1] - dp if rows["key d"][-1] else 0)
        cc = r.cmd("HGETALL", k + b"c") or []
        cp = sum(len(x) for x in cc)
        add("  :c records", cp)
        add("  :c overhead", rows["key c"][-1] - cp if rows["key c"][-1] else 0)
        ll = r.cmd("LRANGE", k + b"l", 0, -1) or []
        lp = sum(len(x) for x in ll)
        nl.append(len(ll))
        add("  :l entries", lp)
        add("  :l overhead", rows["key l"][-1] - lp if rows["key l"][-1] else 0)
        add("  :l bytes per entry", lp / len(ll) if ll else 0)
    mean = lambda xs: sum(xs) / len(xs)
    print("%d customers sampled under %r; mean per customer (MEMORY USAGE ... SAMPLES 0; payload = field + value bytes)"
          % (len(custs), a.prefix))
    print("%-36s %10s %10s" % ("what", "mean B", "median B"))
    order = ["all keys", "key p", "  :p profile (p)", "  :p kept outputs (o<k><id>, po)", "  :p v, hw, tf, tn",
             "  :p overhead", "key d", "  :d records (id + record)", "  :d overhead", "key c", "  :c records",
             "  :c overhead", "key l", "  :l entries", "  :l overhead", "  :l bytes per entry", "key t"]
    for name in order:
        xs = rows[name]
        print("%-36s %10.0f %10.0f" % (name, mean(xs), statistics.median(xs)))
    print("events in :d per customer: mean %.1f, median %d; ledger entries: mean %.1f, median %d"
          % (mean(nd), statistics.median(nd), mean(nl), statistics.median(nl)))
    print("encodings: " + ", ".join("%s %s x%d" % (k, (e or b"").decode() if isinstance(e, bytes) else e, n)
                                    for (k, e), n in sorted(encs.items())))
    ten = [i for i, n in enumerate(nd) if 9 <= n <= 11]
    if ten:
        print("customers with 9-11 events in :d: %d, all keys mean %.0f B (p %.0f, d %.0f, c %.0f, l %.0f); "
              "their :p a hashtable: %d"
              % (len(ten), mean([rows["all keys"][i] for i in ten]), mean([rows["key p"][i] for i in ten]),
                 mean([rows["key d"][i] for i in ten]), mean([rows["key c"][i] for i in ten]),
                 mean([rows["key l"][i] for i in ten]), sum(1 for i in ten if penc[i] == b"hashtable")))


if __name__ == "__main__":
    main()
