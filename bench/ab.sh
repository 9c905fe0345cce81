#!/usr/bin/env bash
# Before/after: builds two commits of gradtape in release mode (each in a worktree of its own
# under target/ab) and runs `gradtape bench --json` alternately, N rounds (default 5), then
# prints each workload's median of the rounds' medians and minima, and after/before.
#
#   bench/ab.sh OLD_COMMIT NEW_COMMIT [WORKLOAD...]     (N=7 bench/ab.sh ... for more rounds)
#
# The worktrees stay for the next comparison; `git worktree remove --force target/ab/src-C`
# (or deleting target/ab, then `git worktree prune`) removes them.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/ab.sh OLD_COMMIT NEW_COMMIT [WORKLOAD...]" >&2; exit 2; }
root=$(git rev-parse --show-toplevel)
old=$1 new=$2
shift 2
out=$root/target/ab
mkdir -p "$out"
for c in "$old" "$new"; do
  dir=$out/src-$c
  [ -d "$dir" ] || git -C "$root" worktree add --detach "$dir" "$c" >/dev/null
  (cd "$dir" && cargo build --release -q -p gradtape-cli)
done
: >"$out/old.jsonl"
: >"$out/new.jsonl"
for _ in $(seq 1 "${N:-5}"); do
  "$out/src-$old/target/release/gradtape" bench --json "$@" >>"$out/old.jsonl"
  "$out/src-$new/target/release/gradtape" bench --json "$@" >>"$out/new.jsonl"
done
python3 - "$out/old.jsonl" "$out/new.jsonl" <<'PY'
import json, statistics, sys
def load(path):
    runs = {}
    for line in open(path):
        if line.startswith("{"):
            j = json.loads(line)
            runs.setdefault(j["name"], []).append((j["median_us"], j["min_us"]))
    return runs
old, new = load(sys.argv[1]), load(sys.argv[2])
print(f"{'workload':18} {'old median':>11} {'new median':>11} {'ratio':>6} {'old min':>10} {'new min':>10} {'ratio':>6}")
for name in old:
    om = statistics.median(m for m, _ in old[name]); nm = statistics.median(m for m, _ in new[name])
    on = min(n for _, n in old[name]); nn = min(n for _, n in new[name])
    print(f"{name:18} {om:11.2f} {nm:11.2f} {nm/om:6.3f} {on:10.2f} {nn:10.2f} {nn/on:6.3f}")
PY
