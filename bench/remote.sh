#!/usr/bin/env bash
# Benchmark offsite and restic against real remote storage on 127.0.0.1: the same first
# backup and full restore to a local directory, to OpenSSH's sftp and to an S3 server.
#
#   bash bench/remote.sh
#
# Environment (all optional):
#   BENCH_SCALE=1.0          dataset size multiplier (1.0 ~ 3.7 GiB, see bench/gen.py)
#   BENCH_SEED=1             dataset seed
#   BENCH_DIR=bench/work     dataset (shared with bench/run.sh, same stamp logic); this
#                            script's repositories, caches, restores and logs go in
#                            $BENCH_DIR/remote
#   BENCH_BACKENDS="local sftp s3"
#                            backends to run (keep local: the remote/local ratio needs it)
#   BENCH_SSH_PORT, BENCH_S3_PORT
#                            server ports (default: a free port each)
#   OFFSITE_BIN              use this offsite binary instead of building target/release/offsite
#
# Servers, started by this script and killed when it exits (even on failure):
#   sftp  /usr/sbin/sshd with its own config, host key, client key, authorized_keys and
#         known_hosts in a temporary directory (internal-sftp, key login only, strict host
#         key checking on the client side); the repositories are plain directories.
#   s3    s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked) with an access
#         key and signature checks; bucket "bench" is a directory under its root.
# Both run on this machine, so client and server share the CPUs: "server cpu s" is the
# CPU the server used during the step (sshd with its sftp children, or s3s-fs).
#
# Per backend, in this order: offsite init + first backup, restic init + first backup,
# offsite restore, restic restore (each restore into an empty directory, verified with
# diff -r). restic runs with its defaults (repository v2, compression auto, 5 connections).
# The page cache is not dropped: all numbers are warm-cache numbers.
#
# Results: a table on stdout and bench/results/remote-latest.md. Every command's output is
# kept in $BENCH_DIR/remote/logs; any failing command stops the run with its log tail.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The command line as the user gave it, for the results file.
COMMAND=""
for v in BENCH_SCALE BENCH_SEED BENCH_DIR BENCH_BACKENDS BENCH_SSH_PORT BENCH_S3_PORT OFFSITE_BIN; do
    if [[ -n ${!v+set} ]]; then COMMAND+="$v=\"${!v}\" "; fi
done
COMMAND+="bash bench/remote.sh"

BENCH_SCALE=${BENCH_SCALE:-1.0}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/work}
BENCH_BACKENDS=${BENCH_BACKENDS:-local sftp s3}
read -ra BACKENDS <<<"$BENCH_BACKENDS"
RESULTS_MD=$ROOT/bench/results/remote-latest.md
TOOLS=(offsite restic)

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
DATA=$BENCH_DIR/data
STAMP=$BENCH_DIR/data.stamp
WORK=$BENCH_DIR/remote
STORE=$WORK/store        # local repositories, the sftp server's files, the s3 server's root
CACHES=$WORK/cache
RESTORES=$WORK/restore
LOGS=$WORK/logs
RESULTS_TSV=$WORK/results.tsv

# Both tools get the same secret from the environment, and the same S3 credentials.
PASSWORD=offsite-bench-passphrase
export OFFSITE_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD
S3_BUCKET=bench
export AWS_ACCESS_KEY_ID=offsitebench AWS_SECRET_ACCESS_KEY=offsite-bench-secret-key
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has() { command -v "$1" >/dev/null 2>&1; }
in_list() { # in_list WORD LIST...
    local w=$1; shift
    local x
    for x in "$@"; do [[ $x == "$w" ]] && return 0; done
    return 1
}

# ---------------------------------------------------------------------------- setup

SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi

setup_tools() {
    local b
    for b in "${BACKENDS[@]}"; do
        in_list "$b" local sftp s3 || die "unknown backend '$b' in BENCH_BACKENDS"
    done
    [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
    has restic || die "restic is missing (apt-get install restic)"
    has python3 || die "python3 is missing (bench/gen.py needs it)"
    if in_list sftp "${BACKENDS[@]}"; then
        [[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing (apt-get install openssh-server)"
        has ssh || die "ssh is missing (restic's sftp backend runs it)"
    fi
    if in_list s3 "${BACKENDS[@]}"; then
        has s3s-fs || die "s3s-fs is missing (cargo install s3s-fs@0.14.1 --features binary --locked)"
    fi

    OFFSITE=${OFFSITE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/offsite}
    if [[ -z ${OFFSITE_BIN:-} ]]; then
        log "cargo build --release -p offsite-cli"
        (cd "$ROOT" && cargo build --release -p offsite-cli)
    fi
    [[ -x $OFFSITE ]] || die "no offsite binary at $OFFSITE"
}

tool_version() {
    case $1 in
        offsite) "$OFFSITE" --version 2>/dev/null || echo "offsite (no --version)";;
        restic) restic version;;
    esac | head -n 1
}

# Generate the dataset once; regenerate when it was mutated or made with other parameters
# (the same stamp as bench/run.sh, so the two scripts share one dataset).
prepare_data() {
    local want="scale=$BENCH_SCALE seed=$BENCH_SEED pristine"
    if [[ -d $DATA && -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
        log "reusing dataset $DATA ($want)"
    else
        rm -rf "$DATA" "$STAMP"
        log "generating dataset: $want"
        python3 "$ROOT/bench/gen.py" "$DATA" --scale "$BENCH_SCALE" --seed "$BENCH_SEED"
        echo "$want" >"$STAMP"
    fi
}

# ---------------------------------------------------------------------------- servers

SRV=""            # temporary directory: keys and configs (server logs go in $LOGS)
SSHD_PID="" S3_PID=""

stop_servers() {
    local pid
    for pid in $SSHD_PID $S3_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    SSHD_PID="" S3_PID=""
    if [[ -n $SRV && -d $SRV ]]; then rm -rf "$SRV"; fi
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID NAME LOG: a TCP probe every 50 ms, up to 10 s; dies if PID exits.
wait_port() {
    local port=$1 pid=$2 name=$3 logf=$4 i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logf" >&2 || true
            die "$name exited before listening on 127.0.0.1:$port (log: $logf)"
        fi
        sleep 0.05
    done
    tail -n 30 "$logf" >&2 || true
    die "$name is not listening on 127.0.0.1:$port after 10 s (log: $logf)"
}

# sshd on 127.0.0.1 with everything in $SRV (see /work/shared/INFRA.md).
start_sshd() {
    SSH_PORT=${BENCH_SSH_PORT:-$(free_port)}
    SSH_USER=$(id -un)
    if [[ ! -d /run/sshd ]]; then "${SUDO[@]}" mkdir -p -m 0755 /run/sshd; fi
    ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$SRV/host_key"
    ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$SRV/client_key"
    cp "$SRV/client_key.pub" "$SRV/authorized_keys"
    cat >"$SRV/sshd_config" <<EOC
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SRV/host_key
PidFile $SRV/sshd.pid
AuthorizedKeysFile $SRV/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOC
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$SRV/host_key.pub")" >"$SRV/known_hosts"
    /usr/sbin/sshd -f "$SRV/sshd_config" -D -e </dev/null >"$LOGS/sshd.log" 2>&1 &
    SSHD_PID=$!
    wait_port "$SSH_PORT" "$SSHD_PID" sshd "$LOGS/sshd.log"
    SSH_KEY=$SRV/client_key SSH_KNOWN=$SRV/known_hosts
    # restic splits sftp.command on spaces: no path here may contain one.
    RESTIC_SFTP_COMMAND="ssh -F /dev/null -p $SSH_PORT -i $SSH_KEY -o IdentitiesOnly=yes"
    RESTIC_SFTP_COMMAND+=" -o UserKnownHostsFile=$SSH_KNOWN -o StrictHostKeyChecking=yes"
    RESTIC_SFTP_COMMAND+=" -o BatchMode=yes $SSH_USER@127.0.0.1 -s sftp"
    # One login before measuring, so a broken setup fails here with a clear message.
    if ! ssh -F /dev/null -p "$SSH_PORT" -i "$SSH_KEY" -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$SSH_KNOWN" -o StrictHostKeyChecking=yes -o BatchMode=yes \
        "$SSH_USER@127.0.0.1" true >"$LOGS/ssh-probe.log" 2>&1; then
        cat "$LOGS/ssh-probe.log" >&2
        tail -n 20 "$LOGS/sshd.log" >&2
        die "cannot log in to the benchmark sshd on 127.0.0.1:$SSH_PORT"
    fi
    log "sshd: 127.0.0.1:$SSH_PORT (pid $SSHD_PID), user $SSH_USER"
}

# s3s-fs on 127.0.0.1; the bucket is the directory $STORE/s3/$S3_BUCKET.
start_s3() {
    S3_PORT=${BENCH_S3_PORT:-$(free_port)}
    mkdir -p "$STORE/s3/$S3_BUCKET"
    RUST_LOG=warn s3s-fs --host 127.0.0.1 --port "$S3_PORT" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
        "$STORE/s3" </dev/null >"$LOGS/s3s-fs.log" 2>&1 &
    S3_PID=$!
    wait_port "$S3_PORT" "$S3_PID" s3s-fs "$LOGS/s3s-fs.log"
    S3_ENDPOINT=http://127.0.0.1:$S3_PORT
    log "s3s-fs: $S3_ENDPOINT (pid $S3_PID), bucket $S3_BUCKET"
}

server_pid() {
    case $1 in
        sftp) echo "$SSHD_PID";;
        s3) echo "$S3_PID";;
        *) echo "";;
    esac
}
server_log() {
    case $1 in
        sftp) echo "$LOGS/sshd.log";;
        s3) echo "$LOGS/s3s-fs.log";;
    esac
}

# CPU seconds a server process used so far, its reaped children included (sshd forks a
# process per connection; the sftp session runs in one of them).
CLK_TCK=$(getconf CLK_TCK)
server_cpu() {
    local pid=$1 i
    [[ -n $pid ]] || { echo 0; return; }
    # Wait (up to 5 s) for sshd to reap the finished sessions so their CPU is counted.
    for ((i = 0; i < 100; i++)); do
        pgrep -P "$pid" >/dev/null 2>&1 || break
        sleep 0.05
    done
    # Fields after the "(comm)": state is 3, utime..cstime are 14..17.
    sed 's/^.*) //' "/proc/$pid/stat" |
        awk -v hz="$CLK_TCK" '{printf "%.2f", ($12 + $13 + $14 + $15) / hz}'
}

# ---------------------------------------------------------------------------- measuring

# measure CMD...: run CMD for the current $BACKEND/$TOOL/$SCENARIO under /usr/bin/time,
# output to a log file; adds wall/user/sys to the step totals and keeps the peak RSS.
# Dies on failure with the log tail (and the server's, for a remote backend).
measure() {
    local logf="$LOGS/$BACKEND-$SCENARIO-$TOOL.log" tf="$LOGS/.time"
    sync
    echo "\$ $*" >>"$logf"
    if ! XDG_CACHE_HOME="$CACHES/$BACKEND-$TOOL" /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" \
        >>"$logf" 2>&1; then
        log "FAILED: $TOOL $BACKEND $SCENARIO: $*"
        tail -n 30 "$logf" >&2
        local pid slog
        pid=$(server_pid "$BACKEND")
        if [[ -n $pid ]]; then
            slog=$(server_log "$BACKEND")
            kill -0 "$pid" 2>/dev/null || log "the $BACKEND server (pid $pid) is gone"
            log "last lines of $slog:"
            tail -n 15 "$slog" >&2 || true
        fi
        die "$TOOL failed in $BACKEND $SCENARIO (full log: $logf)"
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -n 1 "$tf")
    STEP_WALL=$(awk -v a="$STEP_WALL" -v b="$wall" 'BEGIN{printf "%.2f", a+b}')
    STEP_CPU=$(awk -v a="$STEP_CPU" -v b="$user" -v c="$sys" 'BEGIN{printf "%.2f", a+b+c}')
    if ((rss > STEP_RSS)); then STEP_RSS=$rss; fi
}

# step SCENARIO FUNCTION [record]: run FUNCTION for $BACKEND/$TOOL; with "record", append
# a result row (wall, cpu, peak RSS, server cpu, repository size on the server's disk).
step() {
    SCENARIO=$1
    local func=$2 record=${3:-}
    STEP_WALL=0 STEP_CPU=0 STEP_RSS=0
    mkdir -p "$CACHES/$BACKEND-$TOOL"
    : >"$LOGS/$BACKEND-$SCENARIO-$TOOL.log"
    local pid cpu0 cpu1
    pid=$(server_pid "$BACKEND")
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
        tail -n 15 "$(server_log "$BACKEND")" >&2 || true
        die "the $BACKEND server (pid $pid) died before $TOOL $SCENARIO"
    fi
    cpu0=$(server_cpu "$pid")
    "$func"
    cpu1=$(server_cpu "$pid")
    [[ -n $record ]] || return 0
    local srv size
    srv=-
    if [[ -n $pid ]]; then srv=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}'); fi
    size=$(du -sb "$REPO_DIR" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$BACKEND" "$TOOL" "$SCENARIO" "$STEP_WALL" \
        "$STEP_CPU" "$STEP_RSS" "$srv" "$size" >>"$RESULTS_TSV"
    log "$BACKEND $TOOL $SCENARIO: wall ${STEP_WALL}s cpu ${STEP_CPU}s" \
        "rss $((STEP_RSS / 1024))MiB server cpu ${srv} repo $((size / 1048576))MiB"
}

# use BACKEND TOOL: set BACKEND, TOOL, REPO (what the tool is given) and REPO_DIR (where
# the repository's files end up on this machine).
use() {
    BACKEND=$1 TOOL=$2
    case $BACKEND in
        local) REPO_DIR=$STORE/local/$TOOL REPO=$REPO_DIR;;
        sftp) REPO_DIR=$STORE/sftp/$TOOL
            case $TOOL in
                offsite) REPO=sftp://$SSH_USER@127.0.0.1:$SSH_PORT$REPO_DIR;;
                restic) REPO=sftp:$SSH_USER@127.0.0.1:$REPO_DIR;;
            esac;;
        s3) REPO_DIR=$STORE/s3/$S3_BUCKET/$TOOL
            case $TOOL in
                offsite) REPO=s3://$S3_BUCKET/$TOOL;;
                restic) REPO=s3:$S3_ENDPOINT/$S3_BUCKET/$TOOL;;
            esac;;
    esac
}

# ---------------------------------------------------------------------------- tools

# The remote options each tool needs for $BACKEND, as words to put before the subcommand.
offsite_args() {
    OPTS=(--repo "$REPO")
    case $BACKEND in
        sftp) OPTS+=(--ssh-identity "$SSH_KEY" --ssh-known-hosts "$SSH_KNOWN");;
        s3) OPTS+=(--s3-endpoint "$S3_ENDPOINT");;
    esac
}
restic_args() {
    OPTS=(-r "$REPO")
    case $BACKEND in
        sftp) OPTS+=(-o "sftp.command=$RESTIC_SFTP_COMMAND");;
        s3) OPTS+=(-o s3.region="$AWS_REGION" -o s3.bucket-lookup=path);;
    esac
}

offsite_init() { offsite_args; measure "$OFFSITE" "${OPTS[@]}" init; }
offsite_backup() {
    offsite_args
    measure "$OFFSITE" "${OPTS[@]}" backup "$DATA" --json
    tail -n 1 "$LOGS/$BACKEND-$SCENARIO-$TOOL.log" | grep -q '"type": *"summary"' ||
        log "WARNING: offsite backup --json did not end with a summary line"
}
offsite_restore() {
    offsite_args
    measure "$OFFSITE" "${OPTS[@]}" restore latest --target "$TARGET"
    RESTORED=$TARGET$DATA
}

restic_init() { restic_args; measure restic "${OPTS[@]}" init; }
restic_backup() { restic_args; measure restic "${OPTS[@]}" backup "$DATA"; }
restic_restore() {
    restic_args
    measure restic "${OPTS[@]}" restore latest --target "$TARGET"
    RESTORED=$TARGET$DATA
}

# ---------------------------------------------------------------------------- scenarios

init() { "${TOOL}_init"; }
backup() { "${TOOL}_backup"; }

# Restore into an empty directory, then compare with the source.
verified_restore() {
    TARGET=$RESTORES/$BACKEND-$TOOL
    rm -rf "$TARGET"
    mkdir -p "$TARGET"
    RESTORED=
    "${TOOL}_restore"
    log "verifying $BACKEND $TOOL restore: diff -r $DATA $RESTORED"
    local d="$LOGS/$BACKEND-$SCENARIO-$TOOL.diff"
    if ! diff -r --no-dereference "$DATA" "$RESTORED" >"$d" 2>&1; then
        head -n 20 "$d" >&2
        die "$BACKEND $TOOL restore differs from the source (see $d)"
    fi
    rm -rf "$TARGET"
}

run_backend() {
    local t
    mkdir -p "$STORE/$1"
    [[ $1 != s3 ]] || mkdir -p "$STORE/s3/$S3_BUCKET"
    for t in "${TOOLS[@]}"; do
        use "$1" "$t"
        step init init
        step backup backup record
    done
    for t in "${TOOLS[@]}"; do
        use "$1" "$t"
        step restore verified_restore record
    done
}

# ---------------------------------------------------------------------------- report

machine_line() {
    local cpu
    cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
    echo "$(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
}

# render_table FORMAT: FORMAT is "text" or "md". MiB/s is dataset file bytes / wall.
# remote/local: offsite's MiB/s on this backend / offsite's MiB/s on local (target >= 0.70).
# offsite/restic: offsite's MiB/s / restic's MiB/s on the same backend (above 1: offsite faster).
render_table() {
    awk -F'\t' -v fmt="$1" -v bytes="$DATA_BYTES" '
        { row[NR] = $0; if ($2 == "offsite") ow[$1 "/" $3] = $4; else rw[$1 "/" $3] = $4 }
        END {
            if (fmt == "md") {
                print "| backend | tool | scenario | wall s | MiB/s | cpu s | peak RSS MiB | server cpu s | repo MiB | remote/local | offsite/restic |"
                print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
            } else {
                printf "%-7s %-8s %-8s %8s %8s %8s %8s %8s %9s %14s %8s\n", "backend", "tool", "scenario", \
                    "wall s", "MiB/s", "cpu s", "RSS MiB", "srv cpu", "repo MiB", "remote/local", "off/rst"
            }
            for (i = 1; i <= NR; i++) {
                split(row[i], f, "\t")
                k = f[1] "/" f[3]
                speed = f[4] > 0 ? sprintf("%.1f", bytes / 1048576 / f[4]) : "-"
                rl = "-"; vr = "-"
                if (f[2] == "offsite") {
                    if (f[1] != "local" && (("local/" f[3]) in ow) && f[4] > 0) {
                        r = ow["local/" f[3]] / f[4]
                        rl = sprintf("%.2f %s", r, r >= 0.70 ? "ok" : "LOW")
                    }
                    if ((k in rw) && f[4] > 0) vr = sprintf("%.2f", rw[k] / f[4])
                }
                rss = sprintf("%.0f", f[6] / 1024); repo = sprintf("%.1f", f[8] / 1048576)
                srv = f[7] == "-" ? "-" : sprintf("%.2f", f[7])
                if (fmt == "md")
                    printf "| %s | %s | %s | %.2f | %s | %.2f | %s | %s | %s | %s | %s |\n", \
                        f[1], f[2], f[3], f[4], speed, f[5], rss, srv, repo, rl, vr
                else
                    printf "%-7s %-8s %-8s %8.2f %8s %8.2f %8s %8s %9s %14s %8s\n", \
                        f[1], f[2], f[3], f[4], speed, f[5], rss, srv, repo, rl, vr
            }
        }' "$RESULTS_TSV"
}

write_markdown() {
    mkdir -p "$(dirname "$RESULTS_MD")"
    local t
    {
        echo "# offsite remote-storage benchmark"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- machine: $(machine_line)"
        echo "- command: \`$COMMAND\`"
        echo "- dataset: \`bench/gen.py --scale $BENCH_SCALE --seed $BENCH_SEED\`: $DATA_SUMMARY"
        echo "- tools:"
        for t in "${TOOLS[@]}"; do echo "  - $t: $(tool_version "$t")"; done
        echo "- servers, on the same machine (127.0.0.1, so they share the CPUs with the client):"
        if in_list sftp "${BACKENDS[@]}"; then
            echo "  - sftp: $(ssh -V 2>&1 | head -n 1) sshd, \`Subsystem sftp internal-sftp\`, ed25519 keys;"
            echo "    offsite with \`--ssh-identity --ssh-known-hosts\`, restic with"
            echo "    \`-o sftp.command=\"ssh -p PORT -i KEY -o UserKnownHostsFile=... -o StrictHostKeyChecking=yes ... -s sftp\"\`"
        fi
        if in_list s3 "${BACKENDS[@]}"; then
            echo "  - s3: $(s3s-fs --version 2>/dev/null | head -n 1), signature checks on, path-style;"
            echo "    offsite with \`--s3-endpoint\`, restic with \`-r s3:http://127.0.0.1:PORT/bucket/restic\`"
        fi
        echo "- settings: offsite defaults; restic defaults (repository v2, compression auto,"
        echo "  5 connections per backend). Secrets and S3 credentials from the environment."
        echo "- page cache: warm (not dropped; the dataset fits in RAM)."
        echo "- backup is the first backup into a fresh repository (init not counted); restore is"
        echo "  \`restore latest\` into an empty directory, verified with \`diff -r\`."
        echo "- wall, cpu (user+sys) and peak RSS of the client from \`/usr/bin/time\`; server cpu is"
        echo "  the server process's CPU during the step (sshd including its per-session children);"
        echo "  repo size is \`du -sb\` of the repository's files on the server's disk."
        echo "- MiB/s: the dataset's file bytes ($DATA_MIB MiB) / wall."
        echo "- remote/local: offsite's MiB/s on that backend / offsite's MiB/s on local (target >= 0.70)."
        echo "- offsite/restic: offsite's MiB/s / restic's MiB/s on the same backend and scenario"
        echo "  (above 1 means offsite is faster)."
        echo
        render_table md
    } >"$RESULTS_MD"
}

# ---------------------------------------------------------------------------- main

main() {
    setup_tools
    log "backends: ${BACKENDS[*]}"
    for t in "${TOOLS[@]}"; do log "  $(tool_version "$t")"; done
    prepare_data
    DATA_BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
    DATA_MIB=$(awk -v b="$DATA_BYTES" 'BEGIN{printf "%.1f", b / 1048576}')
    DATA_SUMMARY="$(find "$DATA" -type f | wc -l) files, $DATA_MIB MiB"
    log "dataset: $DATA_SUMMARY"
    # Two repositories (~0.7x the data each) per backend plus one restore at a time.
    local need avail
    need=$(du -sb "$DATA" | awk -v n="${#BACKENDS[@]}" '{printf "%d", $1 * (1.4 * n + 1.1) / 1024}')
    avail=$(df -Pk "$BENCH_DIR" | awk 'NR==2{print $4}')
    if ((avail < need)); then
        log "WARNING: $BENCH_DIR has $((avail / 1048576)) GiB free, the run may need $((need / 1048576)) GiB"
    fi

    rm -rf "$WORK"
    mkdir -p "$STORE" "$CACHES" "$RESTORES" "$LOGS"
    : >"$RESULTS_TSV"
    SRV=$(mktemp -d "${TMPDIR:-/tmp}/offsite-bench-srv.XXXXXX")
    chmod 755 "$SRV"
    if in_list sftp "${BACKENDS[@]}"; then start_sshd; fi
    if in_list s3 "${BACKENDS[@]}"; then start_s3; fi

    local b
    for b in "${BACKENDS[@]}"; do
        log "=== backend $b"
        run_backend "$b"
    done

    echo
    echo "Results (warm page cache; $DATA_SUMMARY; scale $BENCH_SCALE):"
    render_table text
    write_markdown
    echo
    echo "Written to $RESULTS_MD; logs in $LOGS"
}

main "$@"
