#!/usr/bin/env bash
# Runs the simulator's seed search over every shipped scenario (release build) and fails if any
# seed breaks an invariant; the failing seeds' replay commands are printed. Part of the test
# command (scripts/test.sh). SIM_SEEDS (default 300) seeds per scenario; boot-storm-1000 gets
# SIM_STORM_SEEDS (default 20: about 20-25 s and 1 GB each, 200-280 s on 2 jobs; see simulations/README.md). bug-* scenarios fail on purpose and are
# covered by the simulator's own tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo_root"
[[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]] && PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
seeds="${SIM_SEEDS:-300}"
storm_seeds="${SIM_STORM_SEEDS:-20}"
jobs="$(nproc)"
cargo build --release -p muster-sim
sim="${CARGO_TARGET_DIR:-$repo_root/target}/release/muster-sim"
failed=()
for f in simulations/scenarios/*.toml; do
    name="$(basename "$f" .toml)"
    case "$name" in
    bug-*) continue ;;
    boot-storm-1000) n="$storm_seeds" ;;
    *) n="$seeds" ;;
    esac
    start=$SECONDS
    if out="$("$sim" search --scenario "$f" --seeds "$n" --jobs "$jobs" 2>&1)"; then
        echo "sim search $name: $(grep -E 'seeds failed' <<<"$out") ($((SECONDS - start)) s)"
    else
        echo "sim search $name: FAILED" >&2
        grep -E 'FAIL|replay:|seeds failed|error' <<<"$out" >&2 || echo "$out" >&2
        failed+=("$name")
    fi
done
if ((${#failed[@]})); then
    echo "error: simulator found invariant violations in: ${failed[*]}" >&2
    exit 1
fi
