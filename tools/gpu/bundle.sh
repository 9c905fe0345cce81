#!/usr/bin/env bash
# Builds, on a machine with Rust (no CUDA needed), what the GPU machine runs: the release
# `gradtape` and the GPU test binary, into target/gpu-bundle (carry that folder with the device
# tool's `carry`, then run tools/gpu/check.sh there).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/gpu-bundle
rm -rf "$out" && mkdir -p "$out"
cargo build --release -q -p gradtape-cli --features cuda
cp target/release/gradtape "$out/"
# The GPU tests: tests/cuda.rs and the gradient checks (whose GPU test runs the whole table on
# cuda:0). cargo prints each test executable's path as JSON.
for t in cuda gradcheck; do
    exe=$(cargo test --release -q -p gradtape --features cuda --test "$t" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$t")
    cp "$exe" "$out/$t-tests"
done
strip "$out"/* 2>/dev/null || true
ls -la "$out"
