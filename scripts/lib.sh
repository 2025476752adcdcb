# Shared by demo.sh and test.sh: checks and installs what a fresh Debian machine lacks.
# Sourced, not run. Needs root (namespaces, veths, bridges; apt-get).

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_root() {
    if [[ "$(id -u)" != 0 ]]; then
        echo "error: run as root: the testbed creates network namespaces, veths and bridges" >&2
        exit 1
    fi
}

# Installs the Debian packages for any missing command (one `apt-get update`, only if needed).
need_tools() {
    local pkgs=()
    command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
    command -v cc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
    # VIP tests and benchmark: partitions (nft), client pings, the keepalived comparison.
    command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
    command -v ping >/dev/null 2>&1 || pkgs+=(iputils-ping)
    command -v keepalived >/dev/null 2>&1 || [[ -x /usr/sbin/keepalived ]] || pkgs+=(keepalived)
    # The VIP conflict test: a stranger announces the VIP with iputils' arping (its -U syntax).
    arping -V 2>&1 | grep -q iputils || pkgs+=(iputils-arping)
    # The real-etcd testbed (tests/tests/etcd.rs, muster-install-bench): etcd 3.4, etcdctl, and
    # openssl for its test CA (also the kubeadm hook test's CA public key hash).
    command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || pkgs+=(etcd-client)
    command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
    # The DDNS updater's real-BIND tests and benchmark (crates/muster-dns/tests): named and
    # tsig-keygen (bind9), dig and nsupdate (bind9-dnsutils).
    command -v named >/dev/null 2>&1 || [[ -x /usr/sbin/named ]] || pkgs+=(bind9)
    command -v nsupdate >/dev/null 2>&1 || pkgs+=(bind9-dnsutils)
    # tests/tests/deploy.rs: `systemd-analyze verify` and `security --offline` on the unit
    # (offline modes: no running systemd needed).
    command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
    # tests/tests/ops.rs: a third-party gRPC client (grpcio, tests/clients/grpc_check.py) lists
    # the services through reflection and asks the health service, as grpcurl would (grpcurl
    # itself is neither a Debian package nor on a registry this machine reaches).
    command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
    python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
    if ((${#pkgs[@]})); then
        echo "installing: ${pkgs[*]}" >&2
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
    fi
    # ... and prometheus_client's parser reads /metrics (tests/clients/prom_parse.py).
    if ! python3 -c 'import grpc, grpc_reflection, grpc_health, prometheus_client' >/dev/null 2>&1; then
        echo "installing: grpcio grpcio-reflection grpcio-health-checking prometheus-client (pip)" >&2
        python3 -m pip install --quiet --break-system-packages grpcio grpcio-reflection grpcio-health-checking prometheus-client
    fi
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found: install the Rust toolchain (https://rustup.rs) and retry" >&2
        exit 1
    fi
}
