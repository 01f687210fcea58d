#!/usr/bin/python3
"""txn_probe.py - watch Kafka transactions from outside, with confluent-kafka
(Debian's python3-confluent-kafka; run it with /usr/bin/python3).

  txn_probe.py catch PID BOOTSTRAP TIMEOUT_S TOPIC...
      freeze process PID (SIGSTOP) while one of its transactions is open on
      the broker: some partition of the topics holds messages of a
      transaction that is not committed yet (its last stable offset, which a
      read_committed reader sees, is below the high watermark, which a
      read_uncommitted one sees). The moment the probe sees one it stops
      PID, then checks twice, 1 s apart, that the same transaction is still
      open (a commit already on its way would have landed by then; a
      stopped process sends nothing, so from then on the transaction can
      only be aborted: by a successor with the same transactional.id, or by
      the coordinator after transaction.timeout.ms). If it is not, PID is
      thawed (SIGCONT) and the probe watches on. Exit 0 with PID left
      stopped, printing one line "TOPIC PARTITION FIRST END" per partition
      with open messages (offsets FIRST..END-1 are the open transaction's);
      exit 1 after TIMEOUT_S with PID running.

  txn_probe.py aborted BOOTSTRAP FILE...
      check the ranges printed by `catch` (after the transactions ended):
      a read_committed reader sees none of their messages and a
      read_uncommitted reader sees every one (they were aborted). Prints the
      number of messages; exit 1 naming the first range that breaks this.

  txn_probe.py closed BOOTSTRAP FILE...
      exit 0 if no range printed by `catch` is still open (the last stable
      offset of its partition is at or past its END), else 1.

Exit 2 on usage errors.
"""
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

# the latest offset in ListOffsets: the last stable offset for a
# read_committed consumer, the high watermark for a read_uncommitted one
LATEST = -1


def consumer(bootstrap, isolation, **extra):
    conf = {"bootstrap.servers": bootstrap, "group.id": "txn-probe",
            "isolation.level": isolation, "enable.auto.commit": False}
    conf.update(extra)
    return Consumer(conf)


def partitions(c, topics):
    md = c.list_topics(timeout=10)
    return [(t, p) for t in topics for p in sorted(md.topics[t].partitions)]


def latest(c, parts):
    """{(topic, partition): latest offset} in one request per broker."""
    res = c.offsets_for_times([TopicPartition(t, p, LATEST) for t, p in parts], timeout=10)
    out = {}
    for tp in res:
        if tp.error:
            raise RuntimeError(f"offsets of {tp.topic}[{tp.partition}]: {tp.error}")
        out[(tp.topic, tp.partition)] = tp.offset
    return out


def open_ranges(committed, uncommitted, parts):
    """{(topic, partition): (last stable offset, high watermark)} where they differ."""
    lso = latest(committed, parts)
    hw = latest(uncommitted, parts)
    return {k: (lso[k], hw[k]) for k in parts if lso[k] < hw[k]}


def catch(pid, bootstrap, timeout, topics):
    committed = consumer(bootstrap, "read_committed")
    uncommitted = consumer(bootstrap, "read_uncommitted")
    parts = partitions(committed, topics)
    end = time.monotonic() + timeout
    tries = 0
    try:
        while time.monotonic() < end:
            seen = open_ranges(committed, uncommitted, parts)
            if not seen:
                time.sleep(0.002)
                continue
            os.kill(pid, signal.SIGSTOP)
            tries += 1
            try:
                time.sleep(1)
                first = open_ranges(committed, uncommitted, parts)
                time.sleep(1)
                second = open_ranges(committed, uncommitted, parts)
            except BaseException:
                os.kill(pid, signal.SIGCONT)  # never leave it stopped for nothing
                raise
            # the same messages open in both looks: nothing of the stopped
            # process's transaction is moving any more
            still = second
            if still and first == second:
                for (t, p), (lso, hw) in sorted(still.items()):
                    print(f"{t} {p} {lso} {hw}")
                print(f"caught after {tries} freeze(s): {sum(hw - lso for lso, hw in still.values())} "
                      f"messages open in {len(still)} partition(s)", file=sys.stderr)
                return 0
            os.kill(pid, signal.SIGCONT)
        print(f"no open transaction caught in {timeout} s ({tries} freeze(s) came too late)", file=sys.stderr)
        return 1
    finally:
        committed.close()
        uncommitted.close()


def read_ranges(files):
    ranges = []
    for f in files:
        for line in open(f):
            t, p, first, end = line.split()
            ranges.append((t, int(p), int(first), int(end)))
    return ranges


def offsets_seen(bootstrap, isolation, t, p, first, end):
    """Offsets in [first, end) a reader with this isolation level is given."""
    c = consumer(bootstrap, isolation, **{"enable.partition.eof": True})
    seen = []
    try:
        c.assign([TopicPartition(t, p, first)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return seen
                raise RuntimeError(f"reading {t}[{p}]: {m.error()}")
            if m.offset() >= end:
                return seen
            seen.append(m.offset())
        raise RuntimeError(f"reading {t}[{p}] from {first} took over 60 s")
    finally:
        c.close()


def aborted(bootstrap, files):
    ranges = read_ranges(files)
    if not ranges:
        print("no ranges given", file=sys.stderr)
        return 1
    total = 0
    for t, p, first, end in ranges:
        vis = offsets_seen(bootstrap, "read_committed", t, p, first, end)
        if vis:
            print(f"{t}[{p}] offsets {first}..{end - 1}: a read_committed reader sees {len(vis)} of them "
                  f"(first {vis[0]}): that transaction was committed, not aborted", file=sys.stderr)
            return 1
        raw = offsets_seen(bootstrap, "read_uncommitted", t, p, first, end)
        if len(raw) != end - first:
            print(f"{t}[{p}] offsets {first}..{end - 1}: a read_uncommitted reader sees {len(raw)} of "
                  f"{end - first}", file=sys.stderr)
            return 1
        total += end - first
    print(total)
    return 0


def closed(bootstrap, files):
    ranges = read_ranges(files)
    c = consumer(bootstrap, "read_committed")
    try:
        lso = latest(c, sorted({(t, p) for t, p, _, _ in ranges}))
    finally:
        c.close()
    return 0 if all(lso[(t, p)] >= end for t, p, _, end in ranges) else 1


def main(argv):
    try:
        if len(argv) >= 6 and argv[1] == "catch":
            return catch(int(argv[2]), argv[3], float(argv[4]), argv[5:])
        if len(argv) >= 4 and argv[1] == "aborted":
            return aborted(argv[2], argv[3:])
        if len(argv) >= 4 and argv[1] == "closed":
            return closed(argv[2], argv[3:])
    except (RuntimeError, OSError) as e:
        print(f"txn_probe.py: {e}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
