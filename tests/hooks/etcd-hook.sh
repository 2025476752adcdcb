#!/bin/sh
# etcd testbed hook: forms a real etcd cluster through muster's join order.
#
# Used by the testbed (tests/src/etcd.rs) with `[kubernetes] distribution = "none"`: per-host
# wrappers set ETCD_TB_DIR (the site's etcd directory: ca.pem, records.log, one subdirectory per
# host with its server cert and key), ETCD_TB_NAME (this host's name), ETCD_TB_VIP (the API
# endpoint) and ETCD_TB_VOTERS (control_plane_count), then run this script with a mode:
#
#   install        the install hook (MUSTER_ROLE, MUSTER_NODE_IP, MUSTER_ENDPOINT from muster):
#                  init starts a one-member cluster; control-plane runs `etcdctl member add`
#                  through the endpoint (retrying with backoff while etcd refuses) and starts
#                  its member with the initial cluster member add printed; worker checks the
#                  cluster's health through the endpoint. Idempotent: a re-run after a failure
#                  or a crash finds what an earlier run did (member list, data dir, pid file).
#   health         exits 0 only while the local etcd (https://127.0.0.1:2379) is healthy.
#   worker-health  exits 0 only while the cluster is healthy through the endpoint.
#
# etcd runs in its own session (setsid) with its output in a file, so it outlives the hook and
# the agent, as k3s under systemd would. Every install run appends `start` and `end` lines (and
# `note` lines on the way) to records.log: `WHAT ROLE HOST UNIX_NS [DETAIL]`; a passing probe
# appends `healthy`. Test faults: the flag files `fail-control-plane` and `hold-last-join` in
# ETCD_TB_DIR (see fail_if_flagged, hold_if_flagged).

set -u

mode=${1:-install}
dir=${ETCD_TB_DIR:?ETCD_TB_DIR is not set}
name=${ETCD_TB_NAME:?ETCD_TB_NAME is not set}
vip=${ETCD_TB_VIP:-}
ca=$dir/ca.pem
records=$dir/records.log
host_dir=$dir/$name
data=$host_dir/data
pidfile=$host_dir/etcd.pid
role=${MUSTER_ROLE:-probe}

# Longest the hook waits for etcd to accept a member add, or for a healthy endpoint.
JOIN_DEADLINE_S=90

ctl() {
    ETCDCTL_API=3 etcdctl --cacert "$ca" --dial-timeout=2s --command-timeout=5s "$@"
}

record() {
    echo "$1 $role $name $(date +%s%N) ${2:-}" >>"$records"
}

note() {
    record note "$1"
    echo "$1" >&2
}

# Whether the etcd of this host runs (the pid file names a live etcd process).
running() {
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^etcd "
}

# start_etcd STATE INITIAL_CLUSTER: starts this host's member in its own session.
start_etcd() {
    ip=$MUSTER_NODE_IP
    mkdir -p "$host_dir"
    cd "$host_dir" || exit 1
    setsid etcd --name "$name" --data-dir "$data" \
        --listen-client-urls "https://0.0.0.0:2379" \
        --advertise-client-urls "https://$ip:2379" \
        --cert-file "$host_dir/server.pem" --key-file "$host_dir/server-key.pem" \
        --listen-peer-urls "http://$ip:2380" \
        --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$2" --initial-cluster-state "$1" \
        --initial-cluster-token muster-testbed \
        </dev/null >>"$host_dir/etcd.log" 2>&1 &
    echo $! >"$pidfile"
    note "etcd-started pid=$! state=$1 cluster=$2"
}

ensure_running() {
    if running; then
        note "etcd-already-running"
    else
        start_etcd "$1" "$2"
    fi
}

# The endpoint's member list (simple format), retried: the endpoint may be moving.
member_list() {
    delay=1
    waited=0
    while :; do
        if out=$(ctl --endpoints "https://$MUSTER_ENDPOINT:2379" member list 2>&1); then
            printf '%s\n' "$out"
            return 0
        fi
        [ "$waited" -ge "$JOIN_DEADLINE_S" ] && {
            note "member-list-failed $out"
            return 1
        }
        sleep "$delay"
        waited=$((waited + delay))
    done
}

# The initial cluster for a member added but never started, from the member list: every
# started member by name, this (unstarted) one by ours.
cluster_from_list() {
    printf '%s\n' "$1" | awk -F', ' -v me="$2" -v n="$name" '
        { peer = $4; who = ($4 == me) ? n : $3; if (who == "") next
          out = out (out == "" ? "" : ",") who "=" peer }
        END { print out }'
}

do_init() {
    peer="http://$MUSTER_NODE_IP:2380"
    # A re-run finds the data dir: the cluster exists, only make sure it runs.
    ensure_running new "$name=$peer"
}

# A test's fault: while the flag file exists, a control-plane run fails after its member add,
# leaving a member added but never started (the case a re-run must repair).
fail_if_flagged() {
    if [ -e "$dir/fail-control-plane" ]; then
        note "injected-failure: etcd not started after member add ($dir/fail-control-plane exists)"
        exit 1
    fi
}

do_control_plane() {
    peer="http://$MUSTER_NODE_IP:2380"
    list=$(member_list) || exit 1
    if printf '%s\n' "$list" | grep -q ", $peer,"; then
        if [ -d "$data/member" ]; then
            ensure_running existing "$name=$peer"
            return
        fi
        # Added by an earlier run that never started it.
        if [ -s "$host_dir/initial-cluster" ]; then
            cluster=$(cat "$host_dir/initial-cluster")
        else
            cluster=$(cluster_from_list "$list" "$peer")
        fi
        note "added-earlier cluster=$cluster"
        fail_if_flagged
        ensure_running existing "$cluster"
        return
    fi
    # Not a member: a data dir here is left from a member that was removed.
    rm -rf "$data"
    delay_ms=250
    start_s=$(date +%s)
    while :; do
        if out=$(ctl --endpoints "https://$MUSTER_ENDPOINT:2379" member add "$name" \
            --peer-urls="$peer" 2>&1); then
            break
        fi
        if [ $(($(date +%s) - start_s)) -ge "$JOIN_DEADLINE_S" ]; then
            note "member-add-failed $(printf '%s' "$out" | tr '\n' ' ')"
            exit 1
        fi
        record note "member-add-refused $(printf '%s\n' "$out" | tail -n 1)"
        sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
        delay_ms=$((delay_ms * 2))
        [ "$delay_ms" -gt 1000 ] && delay_ms=1000
    done
    cluster=$(printf '%s\n' "$out" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
    if [ -z "$cluster" ]; then
        note "member-add-printed-no-cluster $(printf '%s' "$out" | tr '\n' ' ')"
        exit 1
    fi
    printf '%s\n' "$cluster" >"$host_dir/initial-cluster"
    note "member-added"
    fail_if_flagged
    start_etcd existing "$cluster"
    hold_if_flagged "$cluster"
}

# A test's pause: while the flag file exists, the join that completes the cluster (its member
# count reaches ETCD_TB_VOTERS) waits after starting its member, as a slow install would.
hold_if_flagged() {
    members=$(printf '%s\n' "$1" | tr ',' '\n' | grep -c .)
    [ "$members" -ge "${ETCD_TB_VOTERS:-0}" ] || return 0
    waited=0
    while [ -e "$dir/hold-last-join" ] && [ "$waited" -lt "$JOIN_DEADLINE_S" ]; do
        [ "$waited" -eq 0 ] && note "holding the last join ($dir/hold-last-join exists)"
        sleep 1
        waited=$((waited + 1))
    done
}

do_worker() {
    start_s=$(date +%s)
    until out=$(ctl --endpoints "https://$MUSTER_ENDPOINT:2379" endpoint health 2>&1); do
        if [ $(($(date +%s) - start_s)) -ge "$JOIN_DEADLINE_S" ]; then
            note "endpoint-unhealthy $(printf '%s' "$out" | tr '\n' ' ')"
            exit 1
        fi
        sleep 1
    done
    note "endpoint-healthy"
}

case $mode in
install)
    record start
    trap 'record end $?' EXIT
    case $role in
    init) do_init ;;
    control-plane) do_control_plane ;;
    worker) do_worker ;;
    *)
        echo "unknown MUSTER_ROLE $role" >&2
        exit 2
        ;;
    esac
    ;;
remove)
    # The remove command (run by the leader for a host `muster remove` took out): removes the
    # removed host's etcd member, found by name; already gone is done (idempotent).
    gone=${MUSTER_REMOVED_NAME:?MUSTER_REMOVED_NAME is not set}
    role=remove
    list=$(ctl --endpoints https://127.0.0.1:2379 member list) || exit 1
    id=$(printf '%s\n' "$list" | awk -F', ' -v n="$gone" '$3 == n { print $1 }')
    if [ -n "$id" ]; then
        ctl --endpoints https://127.0.0.1:2379 member remove "$id" || exit 1
    fi
    record removed "$gone"
    ;;
health)
    ctl --endpoints https://127.0.0.1:2379 endpoint health >/dev/null 2>&1 || exit 1
    record healthy
    ;;
worker-health)
    ctl --endpoints "https://$vip:2379" endpoint health >/dev/null 2>&1 || exit 1
    record healthy
    ;;
*)
    echo "usage: $0 install|health|worker-health|remove" >&2
    exit 2
    ;;
esac
