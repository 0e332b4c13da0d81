#!/usr/bin/env python3
"""counts_report.py - turns benchmarks/counts' callgrind and strace outputs into Markdown tables.

    counts_report.py RUNS_DIR COMMITS DETAIL_CELL

RUNS_DIR holds one folder per cell and configuration, named SYNC-BYTES-CONFIG (NORMAL-100-vfs), with:
  callgrind/      cg.<pid>.1-NN: dump 1 (`callgrind_control -d` at the end of the measured part,
                  counters zeroed at its start), one file per thread, NN=01 the writer
  strace.txt      strace -f -o output; the writer's access() of /commit_loop-measure-begin and
                  /commit_loop-measure-end bound the measured part and name the writer thread
  replica.txt     the loop's "replica files" line (files and bytes before and after the part)
Self cost (instructions in the function's own code, callees excluded) is what the function
table shows: callgrind_annotate 3.19 misreads the dump's `calls=0` lines of the frames that were
on the stack when the statistics were zeroed, so the dump is read here directly.
"""

import collections
import glob
import os
import re
import subprocess
import sys

OWN_SYSCALLS = ["pwrite64", "pwritev", "pread64", "preadv", "fdatasync", "fsync", "fcntl", "futex", "write", "read"]


def callgrind(path):
    """Returns (total Ir, self Ir by (function, object file name), self Ir by object) of one callgrind dump."""
    names = {"ob": {}, "fn": {}, "cob": {}, "cfn": {}}
    by_fn = collections.Counter()
    by_ob = collections.Counter()
    total = 0
    ob = fn = "?"
    skip_next = False  # the cost line after calls= is the call's inclusive cost, not self cost
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line[0].isdigit() or line[0] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    ir = int(parts[1])
                    by_fn[(fn, os.path.basename(ob))] += ir
                    by_ob[ob] += ir
                continue
            if line.startswith("summary:"):
                total = int(line.split()[1])
                continue
            key, _, value = line.partition("=")
            if key == "calls":
                skip_next = True
            elif key in ("ob", "fn", "cob", "cfn"):
                table = names["ob" if key in ("ob", "cob") else "fn"]
                m = re.match(r"\((\d+)\)(?: (.*))?$", value)
                if m:
                    if m.group(2) is not None:
                        table[m.group(1)] = m.group(2)
                    resolved = table.get(m.group(1), value)
                else:
                    resolved = value
                if key == "ob":
                    ob = resolved
                elif key == "fn":
                    fn = resolved
    return total, by_fn, by_ob


def strace(path):
    """Returns (writer syscalls by name, other threads' syscalls by name, other thread count) in the part."""
    writer = collections.Counter()
    other = collections.Counter()
    others = set()
    start = re.compile(r"^(\d+)\s+([a-z_0-9]+)\(")
    inside = False
    writer_tid = None
    with open(path, errors="replace") as f:
        for line in f:
            m = start.match(line)
            if not m:
                continue
            tid, name = m.group(1), m.group(2)
            if "/commit_loop-measure-begin" in line:
                inside, writer_tid = True, tid
                continue
            if "/commit_loop-measure-end" in line:
                break
            if not inside:
                continue
            if tid == writer_tid:
                writer[name] += 1
            else:
                other[name] += 1
                others.add(tid)
    if writer_tid is None:
        sys.exit(f"counts_report: no measure-begin marker in {path}")
    return writer, other, len(others)


def load(runs, run):
    d = os.path.join(runs, run)
    files = sorted(glob.glob(os.path.join(d, "callgrind", "cg.*.1-[0-9][0-9]")))
    if not files or not files[0].endswith("-01"):
        sys.exit(f"counts_report: no dump of the measured part (callgrind/cg.*.1-01) in {d}")
    threads = [callgrind(f) for f in files]
    w, o, n = strace(os.path.join(d, "strace.txt"))
    replica = open(os.path.join(d, "replica.txt")).read().strip() if os.path.exists(os.path.join(d, "replica.txt")) else ""
    return {"cg": threads, "sys_w": w, "sys_o": o, "sys_threads": n, "replica": replica}


def demangled(names):
    """Swift symbol names as `swift demangle --simplified --compact` spells them (unchanged without it)."""
    names = list(names)
    try:
        out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names) + "\n",
                             capture_output=True, text=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {n: n for n in names}
    return {n: (out[i] if i < len(out) and out[i] else n) for i, n in enumerate(names)}


def per_file(r, other_ir):
    """The other threads' instructions per file the part added to the replica (one per shipped batch)."""
    m = re.search(r"\(\+(\d+) files", r["replica"])
    return fmt(other_ir / int(m.group(1))) if m and int(m.group(1)) > 0 else "-"


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}".rstrip("0").rstrip(".") if x else "0"


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def main():
    runs, commits, detail = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cells = []
    for sync in ("NORMAL", "FULL"):
        for size in ("100", "4096"):
            cells.append((sync, size))
    data = {}
    for sync, size in cells:
        for config in ("plain", "vfs"):
            data[(sync, size, config)] = load(runs, f"{sync}-{size}-{config}")

    print("| synchronous, row | config | Ir/commit writer | Ir/commit other threads | syscalls/commit writer "
          "| syscalls/commit other threads | writer Ir vs plain | all-threads Ir vs plain | writer syscalls vs plain "
          "| replica files during the part | other threads' Ir per new replica file |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for sync, size in cells:
        base = data[(sync, size, "plain")]
        base_w = base["cg"][0][0] / commits
        base_all = sum(t[0] for t in base["cg"]) / commits
        base_sw = sum(base["sys_w"].values()) / commits
        for config in ("plain", "vfs"):
            r = data[(sync, size, config)]
            w = r["cg"][0][0] / commits
            o = sum(t[0] for t in r["cg"][1:]) / commits
            sw = sum(r["sys_w"].values()) / commits
            so = sum(r["sys_o"].values()) / commits
            label = f"{sync}, {'4 KiB' if size == '4096' else '100 B'}"
            othr = f" ({' + '.join(fmt(t[0] / commits) for t in r['cg'][1:])})" if len(r["cg"]) > 2 else ""
            print(f"| {label} | {config} | {fmt(w)} | {fmt(o)}{othr} | {fmt(sw)} | {fmt(so)} | "
                  f"{ratio(w, base_w)} | {ratio(w + o, base_all)} | {ratio(sw, base_sw)} | {r['replica'] or '-'} | {per_file(r, o * commits)} |")

    print()
    print("Writer system calls per commit, by name (plain / vfs; calls made less than once per 200 commits "
          "left out):")
    print()
    names = set()
    for r in data.values():
        names.update(r["sys_w"])
    # Calls no cell makes at least once per 200 commits are left out (rounding would show 0 / 0).
    names = {n for n in names if any(r["sys_w"][n] * 200 >= commits for r in data.values())}
    shown = [n for n in OWN_SYSCALLS if n in names] + sorted(names - set(OWN_SYSCALLS))
    print("| synchronous, row | " + " | ".join(shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for sync, size in cells:
        p, v = data[(sync, size, "plain")]["sys_w"], data[(sync, size, "vfs")]["sys_w"]
        row = [f"{fmt(p[n] / commits)} / {fmt(v[n] / commits)}" for n in shown]
        print(f"| {sync}, {'4 KiB' if size == '4096' else '100 B'} | " + " | ".join(row) + " |")

    print()
    print("Other threads' system calls per commit (vfs), by name:")
    print()
    print("| synchronous, row | calls |")
    print("|---|---|")
    for sync, size in cells:
        o = data[(sync, size, "vfs")]["sys_o"]
        top = ", ".join(f"{n} {fmt(c / commits)}" for n, c in o.most_common(8))
        print(f"| {sync}, {'4 KiB' if size == '4096' else '100 B'} | {top or '-'} |")

    sync, size = detail.split("-")[:2]
    r = data[(sync, size, "vfs")]
    total, by_fn, by_ob = r["cg"][0]
    pt, pfn, _ = data[(sync, size, "plain")]["cg"][0]
    label = f"{sync}, {'4 KiB' if size == '4096' else '100 B'}"
    print()
    print(f"Writer thread, vfs, {label}: top functions by self instructions per commit "
          f"(plain SQLite's figure for the same function beside it):")
    print()
    print("| function | object | Ir/commit vfs | share | Ir/commit plain |")
    print("|---|---|---:|---:|---:|")
    other = collections.Counter()
    for t in r["cg"][1:]:
        other.update(t[1])
    names = demangled({k[0] for k, _ in by_fn.most_common(12)} | {k[0] for k, _ in other.most_common(10)})
    for (fn, ob), ir in by_fn.most_common(12):
        print(f"| `{names[fn]}` | {ob} | {fmt(ir / commits)} | {100 * ir / total:.1f}% | {fmt(pfn.get((fn, ob), 0) / commits)} |")
    other_total = sum(t[0] for t in r["cg"][1:])
    if other_total:
        print()
        print(f"Other threads (the uploader), vfs, {label}: top functions by self instructions per commit:")
        print()
        print("| function | object | Ir/commit | share |")
        print("|---|---|---:|---:|")
        for (fn, ob), ir in other.most_common(10):
            print(f"| `{names[fn]}` | {ob} | {fmt(ir / commits)} | {100 * ir / other_total:.1f}% |")
    print()
    print(f"Writer thread, vfs, {label}: self instructions per commit by object: " +
          ", ".join(f"{os.path.basename(ob)} {fmt(ir / commits)}" for ob, ir in by_ob.most_common(6)) +
          f" (plain: {fmt(pt / commits)} in all).")


if __name__ == "__main__":
    main()
