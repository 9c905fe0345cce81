#!/usr/bin/env python3
"""The unit of issue 22's target for the seed's epoch at 10 million points: one pass over x
and y (80 MB: 10 million float32 each) at this machine's copy bandwidth. A copy of them reads
80 MB and writes 80 MB (STREAM counts both), so one pass takes half of NumPy's copy of x and y
into another buffer; median of 15 rounds, as the other workloads. The target is 1.2x this."""
import json
import statistics
import time

import numpy as np

n = 10_000_000
src = np.random.default_rng(0).random(2 * n, dtype=np.float32)
dst = np.empty_like(src)
np.copyto(dst, src)
times = []
for _ in range(15):
    t = time.perf_counter()
    np.copyto(dst, src)
    times.append(time.perf_counter() - t)
print(json.dumps({"framework": "one pass over x and y at copy bandwidth (half a NumPy copy)",
                  "name": "linreg-10m", "iters": 15,
                  "median_us": statistics.median(times) / 2 * 1e6}))
