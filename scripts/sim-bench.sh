#!/usr/bin/env bash
# Benchmarks the simulator against a release build of an earlier commit, in the same run: each
# scenario's wall time, CPU time and peak RSS (GNU time) for one seed, beside the same figures of
# the base build and their ratio, and whether both runs gave the same trace hash (they do when
# the commits between simulate the same thing).
#
#   scripts/sim-bench.sh [BASE_COMMIT]        # default SIM_BENCH_BASE, else 4818396
#
# SIM_BENCH_SCENARIOS  scenario files (default: boot-storm-1000, boot-storm-100, merge-storm,
#                      leader-loss-loop); SIM_BENCH_SEED the seed (default 0);
# SIM_BENCH_DIR        where the base worktree and its own target dir live (default
#                      /tmp/muster-sim-bench); they are kept, so a second run builds nothing.
# The current tree is built in CARGO_TARGET_DIR (default target/). Building a base from scratch
# takes about 5 minutes on a 2-core machine; each boot-storm-1000 run up to a minute and 3 GB.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
[[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]] && PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
[[ -x /usr/bin/time ]] || { echo "error: needs GNU time (/usr/bin/time; Debian: apt-get install time)" >&2; exit 2; }

base="${1:-${SIM_BENCH_BASE:-4818396}}"
seed="${SIM_BENCH_SEED:-0}"
dir="${SIM_BENCH_DIR:-/tmp/muster-sim-bench}"
read -r -a scenarios <<<"${SIM_BENCH_SCENARIOS:-simulations/scenarios/boot-storm-1000.toml simulations/scenarios/boot-storm-100.toml simulations/scenarios/merge-storm.toml simulations/scenarios/leader-loss-loop.toml}"

sha="$(git rev-parse --short=12 "$base^{commit}")"
head="$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- crates simulations proto || echo +dirty)"
src="$dir/src-$sha"
target="$dir/target-$sha"
mkdir -p "$dir"
if [[ ! -d "$src" ]]; then
    git worktree add --detach "$src" "$sha" >/dev/null
fi
echo "building the base $sha (in $target) and this tree $head (release)" >&2
(cd "$src" && CARGO_TARGET_DIR="$target" cargo build --release -p muster-sim >&2)
cargo build --release -p muster-sim >&2
new="${CARGO_TARGET_DIR:-$repo_root/target}/release/muster-sim"
old="$target/release/muster-sim"

# One run: prints "wall_s cpu_s rss_mb pass hash".
measure() {
    local bin="$1" scenario="$2" out tm
    out="$(mktemp)" tm="$(mktemp)"
    /usr/bin/time -f '%e %U %S %M' -o "$tm" "$bin" run --scenario "$scenario" --seed "$seed" >"$out" 2>/dev/null || true
    local hash pass
    hash="$(awk '/trace hash/ {print $3}' "$out")"
    pass="$(grep -qE ': PASS' "$out" && echo pass || echo FAIL)"
    awk -v h="${hash:-none}" -v p="$pass" '{printf "%.1f %.1f %d %s %s\n", $1, $2 + $3, $4 / 1024, p, h}' "$tm"
    rm -f "$out" "$tm"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }'; }

printf '%s\n' "muster-sim, seed $seed: base $sha vs this tree $head; $(nproc) cores, $(uname -m), $(date -u +%F)"
printf '%-18s | %-26s | %-26s | %-24s | %s\n' scenario "wall s (base → now, ×)" "cpu s (base → now, ×)" "peak RSS MB (base → now, ×)" "result, trace hash"
for f in "${scenarios[@]}"; do
    name="$(basename "$f" .toml)"
    read -r bw bc bm bp bh < <(measure "$old" "$f")
    read -r nw nc nm np nh < <(measure "$new" "$f")
    same="same hash"
    [[ "$bh" == "$nh" ]] || same="hash differs ($bh → $nh)"
    printf '%-18s | %6s → %6s  ×%-6s   | %6s → %6s  ×%-6s   | %6s → %6s  ×%-6s | %s/%s, %s %s\n' \
        "$name" "$bw" "$nw" "$(ratio "$bw" "$nw")" "$bc" "$nc" "$(ratio "$bc" "$nc")" \
        "$bm" "$nm" "$(ratio "$bm" "$nm")" "$bp" "$np" "$nh" "$same"
done
