#!/usr/bin/python3
"""txn_probe.py - watch Kafka transactions from outside, with confluent-kafka
(Debian's python3-confluent-kafka; run it with /usr/bin/python3).

  txn_probe.py open BOOTSTRAP TIMEOUT_S TOPIC...
      wait until some partition of the topics holds messages of a transaction
      that is still open (its last stable offset, seen by a read_committed
      consumer, is below the high watermark, seen by a read_uncommitted one);
      exit 0 then, 1 after TIMEOUT_S.


Exit 2 on usage errors.
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def consumer(bootstrap, isolation):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-probe",
                     "isolation.level": isolation, "enable.auto.commit": False})


def partitions(c, topics):
    md = c.list_topics(timeout=10)
    return [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]


def wait_open(bootstrap, timeout, topics):
    committed = consumer(bootstrap, "read_committed")
    uncommitted = consumer(bootstrap, "read_uncommitted")
    parts = partitions(committed, topics)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            for tp in parts:
                lso = committed.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                hw = uncommitted.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                if lso < hw:
                    print(f"open transaction on {tp.topic}[{tp.partition}]: last stable offset {lso}, "
                          f"high watermark {hw}")
                    return 0
            time.sleep(0.005)
        return 1
    finally:
        committed.close()
        uncommitted.close()


def main(argv):
    if len(argv) >= 5 and argv[1] == "open":
        return wait_open(argv[2], float(argv[3]), argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
