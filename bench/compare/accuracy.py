"""Accuracy of float32 sums: gradtape beside NumPy and PyTorch on the cases of issue 9.

Every side builds the same data (each value is frac(i * phi), computed in float64 and rounded
to float32, plus 1e4 for the row case) and reports the relative error of its float32 sum
against the float64 sum of the same float32 values. Run from the repository root:

    python bench/compare/accuracy.py      # needs numpy and torch (requirements.txt)
"""

import json
import subprocess

import numpy as np
import torch

PHI = 0.6180339887498949
N = 100_000_000
HALF = 50_000_000


def data(n, offset=0.0):
    return (np.float32(offset) + ((np.arange(n, dtype=np.float64) * PHI) % 1.0).astype(np.float32)).astype(np.float32)


def rel(got, want):
    return float(np.max(np.abs((np.asarray(got, dtype=np.float64) - want) / want)))


def main():
    cases = {}
    v = data(N)
    want = v.astype(np.float64).sum()
    cases["all"] = (rel(v.sum(), want), rel(torch.from_numpy(v).sum().item(), want))
    r = data(2 * HALF, 1e4).reshape(2, HALF)
    want = r.astype(np.float64).sum(axis=1)
    cases["rows"] = (rel(r.sum(axis=1), want), rel(torch.from_numpy(r).sum(dim=1).numpy(), want))
    c = data(2 * HALF).reshape(HALF, 2)
    want = c.astype(np.float64).sum(axis=0)
    cases["cols"] = (rel(c.sum(axis=0), want), rel(torch.from_numpy(c).sum(dim=0).numpy(), want))
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "gradtape", "--example", "sum_accuracy"],
        check=True, capture_output=True, text=True,
    ).stdout
    ours = json.loads(out)
    names = {
        "all": "`reduce_sum` of 100M values in [0, 1), all axes",
        "rows": "row sums of [2, 50M] of 1e4 + [0, 1)",
        "cols": "column sums (axis 0) of [50M, 2] of [0, 1)",
    }
    print(f"torch {torch.__version__}, numpy {np.__version__}")
    print("| case (float32) | gradtape | NumPy | PyTorch |")
    print("|---|---|---|---|")
    for k, name in names.items():
        print(f"| {name} | {ours[k]:.1e} | {cases[k][0]:.1e} | {cases[k][1]:.1e} |")


if __name__ == "__main__":
    main()
