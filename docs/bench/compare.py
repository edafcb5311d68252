#!/usr/bin/env python3
"""Print pgflow vs River medians [min..max] and ratios from JSON-lines files.

usage: compare.py pgflow.jsonl river_default.jsonl river_tuned.jsonl
Takes the last summary line per (workload, max_workers) in each file.
"""
import json, sys

def load(path):
    out = {}
    for line in open(path):
        if not line.startswith("{"):
            continue
        o = json.loads(line)
        if o.get("type") == "summary":
            out[(o["workload"], o.get("max_workers"))] = o
    return out

ROWS = [
    (("W1", 100), "drain_msgs_per_s", "W1 drain msgs/s, 100 workers", True),
    (("W1", 10), "drain_msgs_per_s", "W1 drain msgs/s, 10 workers", True),
    (("W1", 100), "enqueue_msgs_per_s", "W1 enqueue msgs/s (batches of 1000)", True),
    (("W2", None), "inserts_per_s", "W2 single publishes/s", True),
    (("W2", None), "insert_p99_ms", "W2 publish call p99 ms", False),
    (("W3", 100), "p50_ms", "W3 pickup p50 ms at 500/s", False),
    (("W3", 100), "p99_ms", "W3 pickup p99 ms at 500/s", False),
    (("W3", 100), "achieved_rate", "W3 achieved publish rate/s", True),
    (("W4", 50), "inserted_per_s", "W4 published/s", True),
    (("W4", 50), "completed_per_s", "W4 handled (completed)/s", True),
    (("W4", 50), "final_backlog", "W4 final backlog", False),
    (("W5", 50), "inserted_per_s_t2", "W5 published/s, pinned third", True),
    (("W5", 50), "handled_per_s_t1", "W5 handled/s, first third", True),
    (("W5", 50), "handled_per_s_t2", "W5 handled/s, pinned third", True),
    (("W5", 50), "pickup_p99_ms_t2", "W5 pickup p99 ms, pinned third", False),
    (("W5", 50), "n_dead_tup", "W5 dead tuples at end", False),
    (("W5", 50), "table_bytes", "W5 table bytes at end", False),
]

def cell(s, f):
    if s is None or f + "_median" not in s:
        return "–", None
    m, lo, hi = s[f + "_median"], s[f + "_min"], s[f + "_max"]
    if f == "table_bytes":
        return "%.1f MB [%.1f..%.1f]" % (m / 2**20, lo / 2**20, hi / 2**20), m
    if m >= 100:
        return "%.0f [%.0f..%.0f]" % (m, lo, hi), m
    return "%g [%g..%g]" % (m, lo, hi), m

files = [load(p) for p in sys.argv[1:4]]
print("| metric | pgflow | River default | River tuned (1 ms cooldown) | pgflow vs River tuned |")
print("|---|---|---|---|---|")
for key, f, label, higher in ROWS:
    cells = [cell(d.get(key), f) for d in files]
    ratio = "–"
    p, t = cells[0][1], cells[2][1]
    if p is not None and t:
        if higher:
            ratio = "%.2f× higher" % (p / t)
        elif p:
            ratio = "%.2f× lower" % (t / p)
    print("| %s | %s | %s | %s | %s |" % (label, cells[0][0], cells[1][0], cells[2][0], ratio))
