#!/usr/bin/env bash
# Builds muster (release) and runs muster-demo: 3 agents in network namespaces form one group.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_tools
cd "$repo_root"
cargo build --release -p muster -p muster-testbed --bin muster --bin muster-demo
release="${CARGO_TARGET_DIR:-$repo_root/target}/release"
# The site's timeline (leader, VIP, join steps) is drawn to target/demo-timeline.svg.
MUSTER_BIN="$release/muster" exec "$release/muster-demo" --svg "${CARGO_TARGET_DIR:-$repo_root/target}/demo-timeline.svg" "$@"
