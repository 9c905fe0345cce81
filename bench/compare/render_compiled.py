#!/usr/bin/env python3
"""The table of BENCHMARKS.md's "Compiled steps" section from the JSON lines of
`bench/compare/compiled.sh`: each workload's eager and compiled gradtape times, the first
compiled call, and each framework's time with its ratio to gradtape compiled."""
import datetime
import json
import os
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    r.setdefault("framework", "gradtape")
ours = {r["name"]: r for r in rows if r["framework"] == "gradtape"}
cpu = "unknown CPU"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
label = {
    "seed": "seed epoch, N=200",
    "linreg-10m": "seed epoch, N=10M",
    "mlp": "MLP 784-256-256-10 Adam step, batch 128",
    "cnn": "LeNet-style CNN Adam step, batch 64",
    "hvp": "HVP of the MLP loss",
    "per-example-grads": "per-example gradients, MLP 784-256-10, batch 128",
}
print(f"Measured {datetime.date.today().isoformat()} on {cpu}, {os.cpu_count()} cores, in one run "
      "of `bench/compare/compiled.sh`; median µs of 15 rounds. Ratio = the framework's time / "
      "gradtape compiled's.\n")
print("| workload | gradtape eager | gradtape compiled (first call) | framework | median | ratio |")
print("|---|---:|---:|---|---:|---:|")
for name, text in label.items():
    e, c = ours.get(name), ours.get(name + "-compiled")
    if not (e and c):
        continue
    peers = [r for r in rows if r["name"] == name and r["framework"] != "gradtape"]
    first = True
    for p in peers or [None]:
        cells = [f"**{text}**", f"{e['median_us']:.2f}",
                 f"**{c['median_us']:.2f}** ({c['first_call_us']:.0f})"] if first else ["", "", ""]
        first = False
        if p is None:
            cells += ["", "", ""]
        else:
            cells += [p["framework"], f"{p['median_us']:.2f}", f"{p['median_us'] / c['median_us']:.2f}×"]
        print("| " + " | ".join(cells) + " |")
