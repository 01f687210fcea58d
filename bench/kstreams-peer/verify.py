#!/usr/bin/env python3
"""verify.py SIMULATE_OUTPUTS PEER_REWARDS PEER_STAGES [EVERY]

Check that the Kafka Streams peer computed what Fidelio computes for the program
core: SIMULATE_OUTPUTS are `fidelio simulate -r core-rules.yaml` outputs over the
same events; PEER_* are the peer's output topics as JSON lines (`fidelio consume
--schema reward|stage-change -e`). For the sample of customers whose number is a
multiple of EVERY (default 1: all), every reward (source event, rule, points,
balance after) and every tier change (source event, from, to) must be the same,
in the same order. Output ids differ by design (Fidelio derives them with XXH3)."""
import json
import sys
from collections import defaultdict

sim_path, rewards_path, stages_path = sys.argv[1:4]
every = int(sys.argv[4]) if len(sys.argv) > 4 else 1


def sampled(cid):
    return int(cid.rsplit("-", 1)[1]) % every == 0


def collect(paths):
    out = defaultdict(list)
    for p in paths:
        for line in open(p):
            o = json.loads(line)
            c = o["customer_id"]
            if not sampled(c):
                continue
            if "reward_id" in o:
                out[c].append(("reward", o["source_event_id"], o["rule_id"], o["points"], o["balance_after"]))
            else:
                out[c].append(("stage", o["source_event_id"], o["ladder"], o["from_stage"], o["to_stage"]))
    return out


want, got = collect([sim_path]), collect([rewards_path, stages_path])
# The peer's two topics interleave per customer only by partition order; compare
# rewards and stage changes as two ordered sequences per customer.
bad = 0
for c in sorted(set(want) | set(got)):
    for kind in ("reward", "stage"):
        w = [x for x in want.get(c, []) if x[0] == kind]
        g = [x for x in got.get(c, []) if x[0] == kind]
        if w != g:
            bad += 1
            if bad <= 3:
                first = next((i for i in range(min(len(w), len(g))) if w[i] != g[i]), min(len(w), len(g)))
                print(f"{c} {kind}s differ at #{first}: fidelio {w[first:first+1]} peer {g[first:first+1]}"
                      f" ({len(w)} vs {len(g)})", file=sys.stderr)
n_rewards = sum(1 for v in want.values() for x in v if x[0] == "reward")
n_stages = sum(1 for v in want.values() for x in v if x[0] == "stage")
if bad or not want:
    print(f"peer and fidelio DISAGREE: {bad} of {len(want)} sampled customers differ", file=sys.stderr)
    sys.exit(1)
print(f"customers={len(want)} rewards={n_rewards} stage_changes={n_stages} agree=yes")
