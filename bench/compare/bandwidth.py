#!/usr/bin/env python3
"""The unit of issue 22's target for the seed's epoch at 10 million points: one pass over x
and y at this machine's copy bandwidth, measured as NumPy copying the 80 MB of x and y (10
million float32 each) into another buffer; median of 15 rounds, as the other workloads."""
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
print(json.dumps({"framework": "copy of x and y (NumPy, the target's unit)", "name": "linreg-10m",
                  "iters": 15, "median_us": statistics.median(times) * 1e6}))
