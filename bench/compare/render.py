#!/usr/bin/env python3
"""Turns the JSON lines of gradtape's and the Python frameworks' benchmarks into the markdown
table of BENCHMARKS.md, with each framework's time divided by gradtape's (how many times faster
gradtape is), the CPU, the core count and the date."""
import datetime
import json
import os
import platform
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = {r["name"]: r for r in rows if r["framework"] == "gradtape"}
cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
label = {
    "seed": "seed epoch, N=200 (µs)",
    "chain": "chain of 2,000 scalar ops, fwd+bwd (µs per op)",
    "mlp": "MLP 784-256-256-10 training step, batch 128, Adam (µs)",
}
out = [
    f"Measured {datetime.date.today().isoformat()} on {cpu}, {os.cpu_count()} cores, {platform.system()}, "
    f"all in one run of `bench/compare/run.sh`. Median of 15 rounds each. "
    f"Ratio = the framework's time / gradtape's time.",
    "",
    "| workload | framework | median | gradtape | ratio |",
    "|---|---|---:|---:|---:|",
]
for name in ["seed", "chain", "mlp"]:
    if name not in ours:
        continue
    key = "us_per_op" if name == "chain" else "median_us"
    g = ours[name][key]
    out.append(f"| {label[name]} | **gradtape** | **{g:.2f}** | | |")
    for r in rows:
        if r["name"] == name and r["framework"] != "gradtape":
            ratio = r[key] / g
            out.append(f"| | {r['framework']} | {r[key]:.2f} | {g:.2f} | {ratio:.0f}× |" if ratio >= 10 else f"| | {r['framework']} | {r[key]:.2f} | {g:.2f} | {ratio:.1f}× |")
print("\n".join(out))
