# shellcheck shell=sh
# Shared by the muster install hooks (k3s, rke2, kubeadm); sourced, not run. POSIX sh.
#
# Every path on the host is taken under "$ROOT" (MUSTER_HOOK_ROOT, empty by default), so tests
# can run a hook against a fake root. Nothing here prints a secret: hooks never print the
# rendered config or MUSTER_SECRETS, and distribution output goes through run_redacted.

ROOT="${MUSTER_HOOK_ROOT:-}"

log() {
    printf 'muster %s hook: %s\n' "$HOOK" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# require_env VAR... : refuses to run without the contract's variables.
require_env() {
    for var in "$@"; do
        eval "value=\${$var:-}"
        # shellcheck disable=SC2154
        [ -n "$value" ] || die "$var is not set (this hook is run by the muster agent; see deploy/hooks/README.md)"
    done
}

# role_check [EXTRA] : MUSTER_ROLE must be one of the contract's roles (or EXTRA, a role only
# this hook's distribution is given, e.g. kubeadm's upload-certs).
role_check() {
    case "$MUSTER_ROLE" in
        init | control-plane | worker) ;;
        *)
            [ -n "${1:-}" ] && [ "$MUSTER_ROLE" = "$1" ] ||
                die "MUSTER_ROLE '$MUSTER_ROLE' is not init, control-plane or worker${1:+ or $1}"
            ;;
    esac
}

# install_file SRC DST MODE : copies SRC to DST atomically with MODE; CHANGED=1 if DST changed.
install_file() {
    [ -r "$1" ] || die "$1 is not readable"
    mkdir -p "$(dirname "$2")"
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        chmod "$3" "$2"
        return 0
    fi
    tmp=$(mktemp "$2.muster.XXXXXX") || die "cannot create a temporary file beside $2"
    chmod "$3" "$tmp"
    cat "$1" >"$tmp" || { rm -f "$tmp"; die "cannot write $2"; }
    mv -f "$tmp" "$2" || { rm -f "$tmp"; die "cannot write $2"; }
    CHANGED=1
}

# install_text DST MODE : like install_file, from standard input.
install_text() {
    src=$(mktemp) || die "cannot create a temporary file"
    cat >"$src"
    install_file "$src" "$1" "$2"
    rm -f "$src"
}

# proxy_lines FORMAT : the proxy variables that are set, one line each through printf FORMAT
# (given name and value), upper case; with LOWER=1 also lower case.
proxy_lines() {
    for var in HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        eval "value=\${$var:-}"
        [ -n "$value" ] || continue
        case "$value" in
            *'"'* | *'\'* | *'
'*) die "$var contains a quote, backslash or newline" ;;
        esac
        # shellcheck disable=SC2059
        printf "$1" "$var" "$value"
        if [ "${LOWER:-0}" = 1 ]; then
            # shellcheck disable=SC2059
            printf "$1" "$(printf %s "$var" | tr 'A-Z' 'a-z')" "$value"
        fi
    done
}

# install_proxy_env DST FORMAT : writes the proxy variables (proxy_lines FORMAT) to DST, 0600
# (a proxy URL may hold credentials); CHANGED=1 if DST changed.
install_proxy_env() {
    env_tmp=$(mktemp) || die "cannot create a temporary file"
    proxy_lines "$2" >"$env_tmp"
    install_file "$env_tmp" "$1" 0600
    rm -f "$env_tmp"
}

# install_ca_files : trusts each PEM file of MUSTER_CA_FILES (colon-separated) system-wide
# (the distributions' containerd and Go binaries read the system store).
install_ca_files() {
    [ -n "${MUSTER_CA_FILES:-}" ] || return 0
    ca_changed=0
    old_ifs=$IFS
    IFS=:
    for ca in $MUSTER_CA_FILES; do
        IFS=$old_ifs
        [ -f "$ROOT$ca" ] || die "CA file $ca (MUSTER_CA_FILES) does not exist"
        grep -q 'BEGIN CERTIFICATE' "$ROOT$ca" || die "CA file $ca is not a PEM certificate"
        CHANGED=0
        install_file "$ROOT$ca" "$ROOT/usr/local/share/ca-certificates/muster-$(basename "$ca" .pem).crt" 0644
        [ "$CHANGED" = 0 ] || ca_changed=1
    done
    IFS=$old_ifs
    if [ "$ca_changed" = 1 ]; then
        if [ -z "$ROOT" ] && command -v update-ca-certificates >/dev/null 2>&1; then
            update-ca-certificates >/dev/null || die "update-ca-certificates failed"
        elif [ -z "$ROOT" ]; then
            log "warning: update-ca-certificates not found; the CA files were copied to /usr/local/share/ca-certificates only"
        fi
        CONFIG_CHANGED=1
    fi
}

# run_redacted CMD... : runs CMD with its output sent to stderr with anything shaped like a
# bootstrap token or a 64-hex key replaced, so join secrets never reach muster's logs.
run_redacted() {
    out=$(mktemp) || die "cannot create a temporary file"
    set +e
    "$@" >"$out" 2>&1
    rc=$?
    set -e
    sed -E 's/[a-z0-9]{6}\.[a-z0-9]{16}/<redacted>/g; s/[0-9a-fA-F]{64}/<redacted>/g' "$out" >&2
    rm -f "$out"
    return "$rc"
}

# warn_no_images DIR : an air-gapped host needs the images tarball there.
warn_no_images() {
    for image in "$1"/*.tar*; do
        [ -e "$image" ] && return 0
    done
    log "warning: no images tarball in ${1#"$ROOT"}; an air-gapped host cannot pull the system images"
}

# start_unit UNIT : enables UNIT and (re)starts it without waiting; muster's health probe
# decides when the step is done.
start_unit() {
    systemctl daemon-reload
    systemctl enable "$1"
    systemctl restart --no-block "$1"
    log "started $1"
}
