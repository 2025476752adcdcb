#!/usr/bin/env bash
# Builds the muster binary the end-to-end tests run, runs every test in the workspace, then the
# simulator's seed search over every shipped scenario (scripts/sim-search.sh, release build).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -- --nocapture`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_tools
cd "$repo_root"
cargo build --bin muster
MUSTER_BIN="${CARGO_TARGET_DIR:-$repo_root/target}/debug/muster" cargo test --workspace "$@"
bash scripts/sim-search.sh
