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
for r in rows:
    r.setdefault("framework", "gradtape")  # `gradtape bench --json` lines name no framework
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
    "linreg-10m": "seed epoch at N=10M (µs)",
    "matmul": "matmul 1024² f32 (µs; GFLOP/s in brackets)",
    "elementwise": "a*b+c on 10M f32 (µs; GB/s in brackets)",
    "reduce": "reduce_sum of 10M f32 (µs; GB/s in brackets)",
}
out = [
    f"Measured {datetime.date.today().isoformat()} on {cpu}, {os.cpu_count()} cores, {platform.system()}, "
    f"all in one run of `bench/compare/run.sh` (gradtape first, then each framework in its own "
    f"process). Median of 15 rounds each. "
    f"Ratio = the framework's time / gradtape's time.",
    "",
    "| workload | framework | median | gradtape | ratio |",
    "|---|---|---:|---:|---:|",
]
def fig(r):
    extra = r.get("gflops") or r.get("gbps")
    return f" ({extra:.1f})" if extra else ""


for name in ["seed", "chain", "mlp", "linreg-10m", "matmul", "elementwise", "reduce"]:
    if name not in ours:
        continue
    key = "us_per_op" if name == "chain" else "median_us"
    g = ours[name][key]
    out.append(f"| {label[name]} | **gradtape** | **{g:.2f}**{fig(ours[name])} | | |")
    for r in rows:
        if r["name"] == name and r["framework"] != "gradtape":
            ratio = r[key] / g
            r_s = f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.2f}×"
            out.append(f"| | {r['framework']} | {r[key]:.2f}{fig(r)} | {g:.2f} | {r_s} |")
ceil = [r for r in rows if r["framework"] == "machine"]
if ceil:
    c = ceil[0]
    out.append("")
    out.append(f"Machine ceiling in the same run: a plain copy (NumPy `copyto`) moves {c['gbps']:.1f} GB/s.")
print("\n".join(out))
