"""What `fidelio diff` must report for two namespaces, computed independently
from their profiles (`fidelio profile --all` / `simulate` JSON lines), for the
e2e tests that check diff (e2e_whatif.sh, e2e_replay.sh)."""
import json


def profiles(path):
    """customer_id -> profile, from a file of JSON lines."""
    out = {}
    for line in open(path):
        p = json.loads(line)
        out[p["customer_id"]] = p
    return out


def flat(p):
    """A profile's fields, nested objects flattened to "outer.inner"."""
    out = {}
    for k, v in p.items():
        if k == "customer_id":
            continue
        if isinstance(v, dict):
            out.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
        else:
            out[k] = v
    return out


def expected(a, b):
    """customer_id -> {field: [a's value, b's value]} for every field that differs."""
    want = {}
    for c in a:
        fa, fb = flat(a[c]), flat(b[c])
        d = {k: [fa[k], fb[k]] for k in fa if fa[k] != fb[k]}
        if d:
            want[c] = d
    return want


def check(want, diff_path):
    """Assert that diff's --json output lists exactly the customers and fields
    of want; returns (its customer lines, its summary)."""
    lines = [json.loads(line) for line in open(diff_path)]
    got = {line["customer_id"]: line["fields"] for line in lines[:-1]}
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    for c in want:
        assert got[c] == want[c], f"{c}: want {want[c]}\n got {got[c]}"
    return lines[:-1], lines[-1]["summary"]
