#!/usr/bin/env bash
# Garage scale-out check: offsite against a real three-node Garage cluster (replication
# factor 3) on 127.0.0.1, with one node killed in the middle.
#
#   bash scripts/garage-scaleout.sh
#
# Steps: start three Garage nodes (own config, RPC port and S3 port each, one shared
# rpc_secret), connect them, assign and apply the layout, import a key, create a bucket and
# allow the key on it; then with offsite: init, back up a generated tree (~200 MiB), SIGKILL
# node 3, mutate the tree and back up again, restore the latest snapshot into an empty
# directory and diff it against the source, `check --read-data`; restart node 3, wait until
# it has rejoined and `check --read-data` again.
#
# offsite's S3 client always talks to node 1's S3 endpoint (a live node): Garage replicates
# behind it, but the client itself does no failover between endpoints.
#
# Environment (all optional):
#   GARAGE        garage binary            (default: `command -v garage`, then ~/.cargo/bin/garage)
#   OFFSITE       offsite binary           (default: <repo>/target/release/offsite)
#   SCALE         gen.py --scale           (default: 0.05, about 200 MiB)
#   KEEP=1        keep the temporary directory even on success
#   STEP_TIMEOUT  seconds before a step is killed (default: 1800)
#
# Prints the time of every step and a final PASS/FAIL line; exits non-zero on any failure.
# All processes it starts are killed on exit; the temporary directory is kept on failure.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
OFFSITE=${OFFSITE:-$ROOT/target/release/offsite}
SCALE=${SCALE:-0.05}
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}
REGION=garage
BUCKET=offsite-scaleout

[[ -x $GARAGE ]] || { echo "garage-scaleout: no garage binary (cargo install garage --locked, or set GARAGE)" >&2; exit 2; }
[[ -x $OFFSITE ]] || { echo "garage-scaleout: no offsite binary at $OFFSITE (cargo build --release)" >&2; exit 2; }

W=$(mktemp -d "${TMPDIR:-/tmp}/garage-scaleout.XXXXXX")
declare -a PID=("" "" "" "")
declare -a STEP_NAMES=() STEP_SECS=() STEP_RESULTS=()
OVERALL=FAIL
CUR_NAME="" CUR_T0="" CUR_LOG=""   # the step in progress (see step)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

summary() {
    echo
    echo "==== garage-scaleout summary ===="
    local i
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-48s %7ss  %s\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}" "${STEP_RESULTS[$i]}"
    done
}

cleanup() {
    local rc=$? i
    if [[ -n $CUR_NAME ]]; then
        STEP_NAMES+=("$CUR_NAME"); STEP_SECS+=("$(elapsed "$CUR_T0" "$(now)")")
        STEP_RESULTS+=("FAILED (exit $rc)")
        log "       FAILED (exit $rc) after ${STEP_SECS[-1]} s; last lines of $CUR_LOG:"
        tail -n 40 "$CUR_LOG" | sed 's/^/    | /'
    fi
    for i in 1 2 3; do
        if [[ -n ${PID[$i]} ]] && kill -0 "${PID[$i]}" 2>/dev/null; then
            kill -KILL "${PID[$i]}" 2>/dev/null || true
            wait "${PID[$i]}" 2>/dev/null || true
        fi
    done
    summary
    if [[ $OVERALL == PASS && $rc -eq 0 && ${KEEP:-0} != 1 ]]; then
        rm -rf "$W"
    else
        echo "  work directory kept: $W (node logs: $W/n*/garage.log, step logs: $W/logs/)"
    fi
    if [[ $OVERALL == PASS && $rc -eq 0 ]]; then
        echo "garage-scaleout: PASS"
    else
        echo "garage-scaleout: FAIL"
        [[ $rc -eq 0 ]] && rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# step NAME CMD...: run CMD (a command or one of the functions below) with its output in
# $W/logs/NN-NAME.log and record its duration. Functions run in this shell (they set PID and
# NODE_ID) with errexit active, so any failing command inside ends the script; the EXIT trap
# then records the step as failed and shows the end of its log. External commands get
# STEP_TIMEOUT.
mkdir -p "$W/logs"
step() {
    CUR_NAME=$1; shift
    CUR_LOG=$W/logs/$(printf '%02d' "${#STEP_NAMES[@]}")-${CUR_NAME//[^A-Za-z0-9]/_}.log
    log "step: $CUR_NAME"
    CUR_T0=$(now)
    if declare -F "$1" >/dev/null; then
        "$@" >"$CUR_LOG" 2>&1
    else
        timeout "$STEP_TIMEOUT" "$@" >"$CUR_LOG" 2>&1
    fi
    STEP_NAMES+=("$CUR_NAME"); STEP_SECS+=("$(elapsed "$CUR_T0" "$(now)")"); STEP_RESULTS+=(ok)
    log "       ok in ${STEP_SECS[-1]} s"
    tail -n 3 "$CUR_LOG" | sed 's/^/    | /'
    CUR_NAME=""
}

g() { local n=$1; shift; "$GARAGE" -c "$W/n$n/garage.toml" "$@"; }

# ---- ports, secrets, configs ----------------------------------------------------------
read -r RPC1 RPC2 RPC3 S31 S32 S33 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')
declare -a RPC=("" "$RPC1" "$RPC2" "$RPC3") S3=("" "$S31" "$S32" "$S33")
declare -a NODE_ID=("" "" "" "")
RPC_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
KEY_ID=GK$(python3 -c 'import secrets; print(secrets.token_hex(12))')
KEY_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

# write_config N: node N's garage.toml; bootstrap_peers lists every node whose id is known.
write_config() {
    local n=$1 i peers=""
    for i in 1 2 3; do
        [[ -n ${NODE_ID[$i]} ]] && peers+="    \"${NODE_ID[$i]}@127.0.0.1:${RPC[$i]}\","$'\n'
    done
    mkdir -p "$W/n$n/meta" "$W/n$n/data"
    cat >"$W/n$n/garage.toml" <<EOF
metadata_dir = "$W/n$n/meta"
data_dir = "$W/n$n/data"
db_engine = "lmdb"
replication_factor = 3
# offsite uploads encrypted (incompressible) packs: do not spend CPU compressing them again
compression_level = "none"

rpc_bind_addr = "127.0.0.1:${RPC[$n]}"
rpc_public_addr = "127.0.0.1:${RPC[$n]}"
rpc_secret = "$RPC_SECRET"
bootstrap_peers = [
$peers]

[s3_api]
api_bind_addr = "127.0.0.1:${S3[$n]}"
s3_region = "$REGION"
root_domain = ".s3.garage.localhost"
EOF
}

port_open() { python3 -c '
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"; }

# start_node N: start node N in the background and wait until its RPC and S3 ports answer.
start_node() {
    local n=$1 i
    RUST_LOG=${RUST_LOG:-garage=info} "$GARAGE" -c "$W/n$n/garage.toml" server >>"$W/n$n/garage.log" 2>&1 &
    PID[n]=$!
    for i in $(seq 1 300); do
        if ! kill -0 "${PID[$n]}" 2>/dev/null; then
            echo "node $n exited; last log lines:"; tail -n 20 "$W/n$n/garage.log"; return 1
        fi
        if port_open "${RPC[$n]}" && port_open "${S3[$n]}"; then
            echo "node $n (pid ${PID[$n]}) listening: rpc ${RPC[$n]}, s3 ${S3[$n]}"
            return 0
        fi
        sleep 0.1
    done
    echo "node $n: ports not open after 30 s"; return 1
}

start_all() {
    start_node 1
    start_node 2
    start_node 3
}

read_ids() {
    local i
    for i in 1 2 3; do
        NODE_ID[i]=$(g "$i" node id -q | cut -d@ -f1)
        [[ ${#NODE_ID[$i]} -eq 64 ]] || { echo "node $i: bad node id '${NODE_ID[$i]}'"; return 1; }
        echo "node $i: ${NODE_ID[$i]}"
    done
}

# healthy_seen_by N: number of the three nodes that node N lists as healthy.
healthy_seen_by() {
    local n=$1 out i count=0
    out=$(g "$n" status 2>/dev/null | sed -n '/==== HEALTHY NODES ====/,/^$/p' | sed '/==== FAILED/,$d') || true
    for i in 1 2 3; do
        grep -q "${NODE_ID[$i]:0:16}" <<<"$out" && count=$((count + 1))
    done
    echo "$count"
}

# wait_healthy N...: wait (60 s max) until each listed node sees all three nodes healthy.
wait_healthy() {
    local i n ok
    for i in $(seq 1 600); do
        ok=1
        for n in "$@"; do
            [[ $(healthy_seen_by "$n") -eq 3 ]] || { ok=0; break; }
        done
        if [[ $ok -eq 1 ]]; then
            for n in "$@"; do echo "--- status seen by node $n:"; g "$n" status; done
            return 0
        fi
        sleep 0.1
    done
    echo "cluster not healthy after 60 s"; for n in "$@"; do g "$n" status || true; done
    return 1
}

connect_nodes() {
    # Configs now list all three peers (used by any restart); connect the running nodes now.
    local i
    for i in 1 2 3; do write_config "$i"; done
    g 1 node connect "${NODE_ID[2]}@127.0.0.1:${RPC[2]}"
    g 1 node connect "${NODE_ID[3]}@127.0.0.1:${RPC[3]}"
    wait_healthy 1 2 3
}

setup_layout() {
    g 1 layout assign -z dc1 -c 1G "${NODE_ID[1]}" "${NODE_ID[2]}" "${NODE_ID[3]}"
    g 1 layout show
    g 1 layout apply --version 1
    g 1 layout show
}

setup_bucket() {
    local i
    # Right after a layout change the tables may still be settling: retry briefly.
    for i in $(seq 1 100); do
        if g 1 bucket create "$BUCKET"; then break; fi
        [[ $i -eq 100 ]] && return 1
        sleep 0.3
    done
    g 1 key import --yes -n offsite-scaleout "$KEY_ID" "$KEY_SECRET"
    g 1 bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID"
    g 1 bucket info "$BUCKET"
}

kill_node3() {
    kill -KILL "${PID[3]}"
    wait "${PID[3]}" 2>/dev/null || true
    PID[3]=""
    echo "node 3 killed (SIGKILL)"
    sleep 1
    g 1 status
}

restart_node3() {
    # node 3 starts from its config, whose bootstrap_peers list all three nodes; no `node connect`
    start_node 3
    wait_healthy 1 3
}

verify_restore() {
    local restored=$W/restore$W/src
    [[ -d $restored ]] || { echo "restored tree not found at $restored"; find "$W/restore" -maxdepth 4 | head; return 1; }
    diff -r --no-dereference "$W/src" "$restored"
    echo "identical: $(find "$W/src" -type f | wc -l) files, $(du -sh "$W/src" | cut -f1)"
}

log "work directory: $W"
log "garage: $GARAGE ($("$GARAGE" --version 2>&1 | head -n 1))"
log "offsite: $OFFSITE ($("$OFFSITE" --version 2>&1 | head -n 1))"
log "ports: rpc ${RPC[1]} ${RPC[2]} ${RPC[3]}, s3 ${S3[1]} ${S3[2]} ${S3[3]}"

# ---- the cluster ----------------------------------------------------------------------
for n in 1 2 3; do write_config "$n"; done
step "start 3 garage nodes" start_all
step "read node ids" read_ids
step "connect nodes (bootstrap_peers + node connect)" connect_nodes
step "layout assign + apply (RF 3)" setup_layout
step "bucket create + key import + bucket allow" setup_bucket

# ---- offsite --------------------------------------------------------------------------
export OFFSITE_PASSWORD=garage-scaleout-demo-passphrase
export OFFSITE_INSECURE_FAST_KDF=testing-only-keys-are-crackable
export OFFSITE_REPOSITORY=s3://$BUCKET/repo
export OFFSITE_CACHE_DIR=$W/cache
export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET AWS_REGION=$REGION
unset AWS_ENDPOINT_URL AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION || true
ENDPOINT=http://127.0.0.1:${S3[1]}   # node 1: it stays up for the whole run
OFF=("$OFFSITE" --s3-endpoint "$ENDPOINT")

step "generate tree (gen.py --scale $SCALE --seed 1)" python3 "$ROOT/bench/gen.py" "$W/src" --scale "$SCALE" --seed 1
log "source: $(du -sh "$W/src" | cut -f1), $(find "$W/src" -type f | wc -l) files"
step "offsite init" "${OFF[@]}" init
step "backup 1 (3 nodes up)" "${OFF[@]}" backup "$W/src"
step "kill node 3 (SIGKILL)" kill_node3
step "mutate tree (gen.py --mutate --seed 2)" python3 "$ROOT/bench/gen.py" --mutate "$W/src" --scale "$SCALE" --seed 2
step "backup 2 (node 3 down)" "${OFF[@]}" backup "$W/src"
step "snapshots (node 3 down)" "${OFF[@]}" snapshots
step "restore latest (node 3 down)" "${OFF[@]}" restore latest --target "$W/restore"
step "diff -r restore vs source" verify_restore
step "check --read-data (node 3 down)" "${OFF[@]}" check --read-data
step "restart node 3 + wait until rejoined" restart_node3
step "check --read-data (node 3 back)" "${OFF[@]}" check --read-data

OVERALL=PASS
