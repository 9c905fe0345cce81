#!/usr/bin/env bash
# Runs `gradtape bench` and the same workloads in NumPy, TensorFlow, PyTorch and JAX, side by side
# on this machine, and rewrites the table between the markers in BENCHMARKS.md.
#
#   bench/compare/run.sh            # sets up bench/compare/.venv from PyPI on first use
#   PYTHON=/path/to/python bench/compare/run.sh   # use an existing environment instead
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

py=$("$here/python.sh")

out=$(mktemp)
cargo build --release -q -p gradtape-cli
./target/release/gradtape bench --json seed chain mlp linreg-10m matmul elementwise reduce | tee -a "$out"
# One process per framework: TensorFlow and PyTorch in one process abort on their native
# libraries.
for fw in numpy tensorflow torch jax; do
    TF_CPP_MIN_LOG_LEVEL=3 "$py" "$here/core.py" "$fw" 2>/dev/null | tee -a "$out"
done

table=$("$py" "$here/render.py" "$out")
rm -f "$out"
echo
echo "$table"
"$py" - "$root/BENCHMARKS.md" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- core:begin -->", "<!-- core:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(path, "w").write(text[:i] + "\n" + table + "\n" + text[j:])
PY

# The jacobian workloads (issue 11): printed side by side, copied into BENCHMARKS.md by hand.
./target/release/gradtape bench --json batch-jacobian jacobian-w per-example-grads
for fw in tensorflow torch jax; do
    (cd "$here" && TF_CPP_MIN_LOG_LEVEL=3 "$py" jacobian.py "$fw" 2>/dev/null)
done
# The Hessian-vector product (issue 12), likewise.
./target/release/gradtape bench --json mlp hvp
for fw in tensorflow torch jax; do
    (cd "$here" && TF_CPP_MIN_LOG_LEVEL=3 "$py" hvp.py "$fw" 2>/dev/null)
done
# The CNN training step (issue 13), likewise.
./target/release/gradtape bench --json cnn
for fw in tensorflow torch jax; do
    (cd "$here" && TF_CPP_MIN_LOG_LEVEL=3 "$py" cnn.py "$fw" 2>/dev/null)
done
# Recurrent layers (issue 25): printed side by side, copied into BENCHMARKS.md by hand.
./target/release/gradtape bench --json lstm
for fw in tensorflow torch jax; do
    (cd "$here" && TF_CPP_MIN_LOG_LEVEL=3 "$py" rnn.py "$fw" 2>/dev/null)
done
# Linear algebra (issue 24): the CLI with its `linalg` feature; printed side by side, copied
# into BENCHMARKS.md ("Linear algebra") by hand.
cargo build --release -q -p gradtape-cli --features linalg
./target/release/gradtape bench --json linalg
for fw in numpy tensorflow torch jax; do
    (cd "$here" && TF_CPP_MIN_LOG_LEVEL=3 "$py" linalg.py "$fw" 2>/dev/null)
done
# The all-reduce (issue 15): gradtape needs Open MPI and `--features mpi`; printed side by side.
if command -v mpirun >/dev/null; then
    cargo build --release -q -p gradtape-cli --features mpi
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun --oversubscribe -np 2 ./target/release/gradtape bench --json allreduce
fi
(cd "$here" && "$py" allreduce.py 2>/dev/null)
