#!/usr/bin/env python3
"""bench/replay_order_model.py - a model of replay's hand-out orders (issue 11): how many
events a batch holds per customer (Redis' work is per customer and apply) in the merge's
order and in the grouped order of src/replay_order.c (windows handed out customer by
customer, every two events touching one customer's state kept in order: a customer's own
events, and a PURCHASE of an invitee, which may credit its referrer). Not a test.

    fidelio gen -n 10000 -m 100000 -o events.jsonl
    bench/replay_order_model.py events.jsonl [--batch 500] [--window 16000 32000 64000]

The events are taken in the file's order (gen writes them in time order, as the merge of
a topic it produced hands them out); partitions do not matter to the grouped order.
"""
import argparse
import collections
import json


def per_apply(events, order, batch):
    """Events per (customer, batch): the mean number of events a customer has in a batch."""
    applies = 0
    for k in range(0, len(order), batch):
        applies += len({events[i]["customer_id"] for i in order[k:k + batch]})
    return len(order) / applies


def grouped(events, window, crediting=("PURCHASE",)):
    """The grouped order of replay_order_window over consecutive windows."""
    referrers = collections.defaultdict(set)
    out = []
    for w0 in range(0, len(events), window):
        win = range(w0, min(w0 + window, len(events)))
        for i in win:
            e = events[i]
            if e["type"] == "SIGNUP" and (e.get("payload") or {}).get("referred_by"):
                referrers[e["customer_id"]].add(e["payload"]["referred_by"])
        touches, lists, own = {}, collections.defaultdict(collections.deque), collections.defaultdict(collections.deque)
        for i in win:
            c = events[i]["customer_id"]
            t = [c] + (sorted(referrers[c] - {c}) if events[i]["type"] in crediting else [])
            touches[i] = t
            for r in t:
                lists[r].append(i)
            own[c].append(i)
        for i0 in win:
            c0 = events[i0]["customer_id"]
            if not own[c0] or own[c0][0] > i0:
                continue
            stack = [(c0, None)]
            while stack:
                c, last = stack[-1]
                if not own[c] or (last is not None and own[c][0] > last):
                    stack.pop()
                    continue
                m = own[c][0]
                blocker = next((lists[r][0] for r in touches[m] if lists[r][0] != m), None)
                if blocker is None:
                    out.append(m)
                    own[c].popleft()
                    for r in touches[m]:
                        lists[r].popleft()
                else:
                    stack.append((events[blocker]["customer_id"], blocker))
    assert sorted(out) == list(range(len(events)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--window", type=int, nargs="+", default=[16000, 32000, 64000])
    a = ap.parse_args()
    events = [json.loads(line) for line in open(a.events)]
    print(f"{len(events)} events, {len({e['customer_id'] for e in events})} customers, batches of {a.batch}")
    print(f"merge order: {per_apply(events, list(range(len(events))), a.batch):.2f} events per customer and batch")
    for w in a.window:
        print(f"grouped, window {w}: {per_apply(events, grouped(events, w), a.batch):.2f} events per customer and batch")


if __name__ == "__main__":
    main()
