#!/usr/bin/env bash
# Coverage-guided fuzzing of muster on stable Rust: AFL++ driving the harnesses of
# crates/muster-fuzz through cargo-afl. See README.md, "Fuzzing".
#
# The fuzzer is `cargo afl fuzz`: the AFL++ (4.40c) that cargo-afl builds from its bundled source
# (`cargo afl config --build`). Debian's afl++ (4.04c in bookworm) is installed for its tools, but
# its afl-fuzz cannot drive binaries built with the afl 0.18 runtime (the fork server protocol
# changed in AFL++ 4.x: "Unable to request new process from fork server").
#
#   scripts/fuzz.sh [EXECS] [TARGET...]
#
# EXECS: executions per target (default 1000000). TARGET: one or more of the names below (default
# all). Each target runs from its committed corpus (crates/muster-fuzz/corpus/<target>/) until
# EXECS executions; crashes are copied to crates/muster-fuzz/regressions/<target>/ (replayed by
# `cargo test -p muster-fuzz` from then on). AFL's work lives in $FUZZ_OUT (default
# /tmp/muster-fuzz). Runs under `nice -n 10`.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(envelope_outsider envelope_member disk_store cluster_state site_key identity config)
EXECS=${1:-1000000}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
OUT=${FUZZ_OUT:-/tmp/muster-fuzz}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

if ! command -v afl-fuzz >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y afl++
fi
if ! cargo afl --version >/dev/null 2>&1; then
    cargo install cargo-afl --locked --version '^0.18'
fi
# cargo-afl's runtime for this rustc (an error when it is already built).
cargo afl config --build >/dev/null 2>&1 || true
nice -n 10 cargo afl build --release --features afl -p muster-fuzz

# This container: no CPU frequency control, no core_pattern to set, cores shared with other work.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1 AFL_FORKSRV_INIT_TMOUT=60000

stat_of() { sed -n "s/^$2 *: *//p" "$1" | head -n 1; }

mkdir -p "$OUT"
printf '%-18s %12s %10s %8s %8s\n' target executions execs/s corpus crashes > "$OUT/summary.txt"
for t in "${TARGETS[@]}"; do
    bin="$CARGO_TARGET_DIR/release/afl-${t//_/-}"
    [ -x "$bin" ] || { echo "no such target: $t" >&2; exit 2; }
    rm -rf "${OUT:?}/$t"
    echo "== $t: $EXECS executions" >&2
    nice -n 10 cargo afl fuzz -i "crates/muster-fuzz/corpus/$t" -o "$OUT/$t" -E "$EXECS" -m none \
        -- "$bin" > "$OUT/$t.log" 2>&1 || { echo "afl-fuzz failed on $t, see $OUT/$t.log" >&2; tail -n 20 "$OUT/$t.log" >&2; exit 1; }
    # Scratch directories of fuzzed processes AFL killed (crates/muster-fuzz/src/scratch.rs).
    rm -rf /dev/shm/muster-fuzz-* 2>/dev/null || true
    stats="$OUT/$t/default/fuzzer_stats"
    execs=$(stat_of "$stats" execs_done)
    secs=$(stat_of "$stats" run_time)
    corpus=$(stat_of "$stats" corpus_count)
    [ -n "$corpus" ] || corpus=$(stat_of "$stats" paths_total)
    crashes=$(stat_of "$stats" saved_crashes)
    [ -n "$crashes" ] || crashes=$(stat_of "$stats" unique_crashes)
    rate=$(( execs / (secs > 0 ? secs : 1) ))
    for c in "$OUT/$t/default/crashes"/id*; do
        [ -f "$c" ] || continue
        mkdir -p "crates/muster-fuzz/regressions/$t"
        cp "$c" "crates/muster-fuzz/regressions/$t/crash-$(sha1sum "$c" | cut -c1-12)"
    done
    printf '%-18s %12s %10s %8s %8s\n' "$t" "$execs" "$rate" "$corpus" "$crashes" | tee -a "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
