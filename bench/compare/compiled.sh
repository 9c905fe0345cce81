#!/usr/bin/env bash
# gradtape's steps eager and compiled (`gradtape::function`) beside TensorFlow (eager and
# tf.function), PyTorch and JAX jit, in one run on this machine; prints the markdown table of
# BENCHMARKS.md's "Compiled steps" section (issue 22).
#
#   bench/compare/compiled.sh            # sets up bench/compare/.venv from PyPI on first use
#   PYTHON=/path/to/python bench/compare/compiled.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
py=$("$here/python.sh")
out=$(mktemp)
cargo build --release -q -p gradtape-cli
./target/release/gradtape bench --json seed seed-compiled mlp mlp-compiled linreg-10m \
    linreg-10m-compiled hvp hvp-compiled cnn cnn-compiled per-example-grads \
    per-example-grads-compiled | tee -a "$out"
# The unit of the 10M target: one pass over x and y at the machine's copy bandwidth.
"$py" "$here/bandwidth.py" | tee -a "$out"
# One process per framework and script (TensorFlow and PyTorch in one process abort).
for fw in tensorflow torch jax; do
    for script in core hvp cnn jacobian; do
        TF_CPP_MIN_LOG_LEVEL=3 "$py" "$here/$script.py" "$fw" 2>/dev/null | tee -a "$out"
    done
done
"$py" "$here/render_compiled.py" "$out"
rm -f "$out"
