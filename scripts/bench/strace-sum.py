#!/usr/bin/env python3
"""Sums an `strace -f -y -s 0 -qq` trace read on stdin (scripts/bench-scale.sh).

`strace-sum.py --stacks OUT` instead sums `strace -k` output (a syscall line,
then its frames ` > obj(symbol+off) [addr]`): OUT gets {"total": calls,
"top": the 8 most frequent chains of named frames outside libc, up to the
first Rust path (`::`), with their counts}.

Writes one JSON object to the file named by argv[1]:

  root        the pid of the first line (the traced treefarm process)
  calls       {syscall: count} of the coordinator (below)
  failed      {syscall: count of calls that returned -1} of the coordinator
  all_calls   {syscall: count} of every traced process, agents included
  journal     {basename: bytes written}, for state.json, state.changes.jsonl,
              their .tmp files and events.jsonl (write, writev, pwrite64, pwritev, pwritev2; the
              return value, i.e. the bytes the kernel took)

The coordinator is the first process and every process it forks that never
calls execve (its threads, helpers); a process that calls execve — the agent
wrapper `sh -c ...` and whatever it starts — is an agent, and so is every
process an agent forks. The trace is streamed (it runs to millions of lines);
per-pid counts are kept and classified at the end, because with -f a child's
first lines can come before its parent's clone returns.
"""

import collections
import json
import re
import sys

JOURNAL = (
    "state.json",
    "state.json.tmp",
    "state.changes.jsonl",
    "state.changes.jsonl.tmp",
    "events.jsonl",
)
WRITES = {"write", "writev", "pwrite64", "pwritev", "pwritev2"}
LINE = re.compile(r"^(\d+)\s+(.*)$")
START = re.compile(r"^([a-z_0-9]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)")
FD_PATH = re.compile(r"^\d+<([^>]*)>")
CLONES = {"clone", "clone3", "fork", "vfork"}

def stacks(out):
    frame = re.compile(r"^ > [^(]*\(([^+)]+)")
    top, cur, total = collections.Counter(), None, 0
    for line in sys.stdin:
        if line[:1].isdigit():
            if cur is not None:
                top[" <- ".join(cur) or "(no named frame)"] += 1
            cur, total = [], total + 1
        elif cur is not None and line.startswith(" > ") and "/libc.so" not in line:
            m = frame.match(line)
            if m and not (cur and "::" in cur[-1]):
                cur.append(m.group(1))
    if cur is not None:
        top[" <- ".join(cur) or "(no named frame)"] += 1
    with open(out, "w") as f:
        json.dump({"total": total, "top": top.most_common(8)}, f)


if sys.argv[1] == "--stacks":
    stacks(sys.argv[2])
    sys.exit(0)

calls = collections.defaultdict(collections.Counter)  # pid -> name -> n
failed = collections.defaultdict(collections.Counter)
parent = {}
execd = set()
journal = collections.Counter()
pending = {}  # pid -> (name, args so far)
root = None


def finish(pid, name, args, tail):
    """A call's result is known: record failure, journal bytes, forks."""
    m = RESULT.search(tail)
    if not m or m.group(1) == "?":
        return
    ret = int(m.group(1))
    if ret < 0:
        failed[pid][name] += 1
        return
    if name in WRITES:
        p = FD_PATH.match(args)
        if p:
            base = p.group(1).rsplit("/", 1)[-1]
            if base in JOURNAL:
                journal[base] += ret
    elif name in CLONES and ret > 0:
        parent[ret] = pid


for raw in sys.stdin:
    m = LINE.match(raw.rstrip("\n"))
    if not m:
        continue
    pid, rest = int(m.group(1)), m.group(2)
    if root is None:
        root = pid
    if rest.startswith("---") or rest.startswith("+++"):
        continue
    r = RESUMED.match(rest)
    if r:
        name, args = pending.pop(pid, (r.group(1), ""))
        finish(pid, name, args, r.group(2))
        continue
    s = START.match(rest)
    if not s:
        continue
    name, args = s.group(1), s.group(2)
    calls[pid][name] += 1
    if name in ("execve", "execveat"):
        execd.add(pid)
    if rest.endswith("<unfinished ...>"):
        pending[pid] = (name, args)
    else:
        finish(pid, name, args, args)


def is_agent(pid, seen=()):
    if pid == root:
        return False
    if pid in execd:
        return True
    p = parent.get(pid)
    if p is None or p in seen:
        return False
    return is_agent(p, seen + (pid,))


coord, coord_failed, everything = collections.Counter(), collections.Counter(), collections.Counter()
for pid, c in calls.items():
    everything.update(c)
    if not is_agent(pid):
        coord.update(c)
        coord_failed.update(failed[pid])
with open(sys.argv[1], "w") as f:
    json.dump({"root": root, "calls": coord, "failed": coord_failed,
               "all_calls": everything, "journal": journal}, f)
