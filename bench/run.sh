#!/usr/bin/env bash
# Benchmark offsite against restic, borg, rustic and bupstash on one generated dataset.
#
#   bash bench/run.sh
#
# Environment (all optional):
#   BENCH_SCALE=1.0          dataset size multiplier (1.0 ~ 3.7 GiB, see bench/gen.py)
#   BENCH_SEED=1             dataset seed; BENCH_MUTATE_SEED=2 seeds the mutation step
#   BENCH_DIR=bench/work     where data, repositories, caches, restores and logs go
#   BENCH_PEERS="restic borg rustic bupstash" (empty: install nothing)
#                            peers this script may install when absent (restic and borg
#                            with apt-get, rustic and bupstash with cargo install)
#   BENCH_TOOLS="offsite restic borg rustic bupstash"
#                            tools to run; when unset, tools that are missing (and could
#                            not be installed) are skipped with a warning; when set, a
#                            missing tool is an error
#   OFFSITE_BIN              use this offsite binary instead of building target/release/offsite
#
# Scenarios, each run for every tool before the next scenario starts so that all tools
# see the same data at the same point:
#   1-first       first backup into a fresh repository
#   2-unchanged   backup again, nothing changed
#   3-mutated     `gen.py --mutate` (1% small files rewritten, 16 MiB appended to a log,
#                 1 MiB rewritten inside a random file), then backup
#   4-restore     restore the latest snapshot into an empty directory, verified with diff -r
# The page cache is not dropped: all numbers are warm-cache numbers.
#
# Results: a table on stdout and bench/results/latest.md. Every tool command's output is
# kept in $BENCH_DIR/logs; any failing command stops the run with its log tail.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The command line as the user gave it, for the results file.
COMMAND=""
for v in BENCH_SCALE BENCH_SEED BENCH_MUTATE_SEED BENCH_DIR BENCH_PEERS BENCH_TOOLS OFFSITE_BIN; do
    if [[ -n ${!v+set} ]]; then COMMAND+="$v=\"${!v}\" "; fi
done
COMMAND+="bash bench/run.sh"

BENCH_SCALE=${BENCH_SCALE:-1.0}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_MUTATE_SEED=${BENCH_MUTATE_SEED:-2}
BENCH_DIR=${BENCH_DIR:-$ROOT/bench/work}
BENCH_PEERS=${BENCH_PEERS-restic borg rustic bupstash}
if [[ -n ${BENCH_TOOLS+set} ]]; then TOOLS_EXPLICIT=1; else TOOLS_EXPLICIT=0; fi
BENCH_TOOLS=${BENCH_TOOLS:-offsite restic borg rustic bupstash}
read -ra PEERS <<<"$BENCH_PEERS"
read -ra WANTED <<<"$BENCH_TOOLS"
RESULTS_MD=$ROOT/bench/results/latest.md

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
DATA=$BENCH_DIR/data
STAMP=$BENCH_DIR/data.stamp
REPOS=$BENCH_DIR/repos
CACHES=$BENCH_DIR/cache
RESTORES=$BENCH_DIR/restore
LOGS=$BENCH_DIR/logs
RESULTS_TSV=$BENCH_DIR/results.tsv

# Every tool gets the same kind of secret, from the environment.
PASSWORD=offsite-bench-passphrase
export OFFSITE_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD \
    RUSTIC_PASSWORD=$PASSWORD
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
APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
}

# The binary a tool name runs ("borg" for borg, etc.).
tool_bin() {
    case $1 in
        offsite) echo "$OFFSITE";;
        *) echo "$1";;
    esac
}

install_peer() {
    case $1 in
        restic) apt_install restic;;
        borg) apt_install borgbackup;;
        rustic) log "cargo install rustic-rs --locked (several minutes)"
            cargo install rustic-rs --locked;;
        bupstash) apt_install libsodium-dev pkg-config
            log "cargo install bupstash --locked (a few minutes)"
            cargo install bupstash --locked;;
        *) die "unknown peer '$1' in BENCH_PEERS";;
    esac
}

setup_tools() {
    local t
    for t in "${WANTED[@]}"; do
        in_list "$t" offsite restic borg rustic bupstash || die "unknown tool '$t' in BENCH_TOOLS"
    done
    if [[ ! -x /usr/bin/time ]]; then apt_install time; fi

    OFFSITE=${OFFSITE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/offsite}
    if in_list offsite "${WANTED[@]}" && [[ -z ${OFFSITE_BIN:-} ]]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release)
    fi

    TOOLS=()
    for t in "${WANTED[@]}"; do
        if [[ $t != offsite ]] && ! has "$t" && in_list "$t" "${PEERS[@]}"; then
            install_peer "$t" || log "WARNING: installing $t failed"
        fi
        if has "$(tool_bin "$t")"; then
            TOOLS+=("$t")
        elif [[ $TOOLS_EXPLICIT -eq 1 ]]; then
            die "$t is in BENCH_TOOLS but $(tool_bin "$t") is not available"
        else
            log "WARNING: skipping $t: $(tool_bin "$t") is not available"
        fi
    done
    [[ ${#TOOLS[@]} -gt 0 ]] || die "no tool to benchmark"
}

tool_version() {
    case $1 in
        offsite) "$OFFSITE" --version 2>/dev/null || echo "offsite (no --version)";;
        restic) restic version;;
        borg) borg --version;;
        rustic) rustic --version;;
        bupstash) bupstash version;;
    esac | head -n 1
}

# Generate the dataset once; regenerate when it was mutated or made with other parameters.
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

mutate_data() {
    echo "scale=$BENCH_SCALE seed=$BENCH_SEED mutated" >"$STAMP"
    python3 "$ROOT/bench/gen.py" --mutate "$DATA" --scale "$BENCH_SCALE" --seed "$BENCH_MUTATE_SEED"
}

# ---------------------------------------------------------------------------- measuring

# measure CMD...: run CMD for the current $TOOL/$SCENARIO under /usr/bin/time, output to a
# log file; adds wall/user/sys to the step totals and keeps the peak RSS. Dies on failure.
measure() {
    local logf="$LOGS/$SCENARIO-$TOOL.log" tf="$LOGS/.time"
    sync
    echo "\$ $*" >>"$logf"
    if ! XDG_CACHE_HOME="$CACHES/$TOOL" /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >>"$logf" 2>&1; then
        log "FAILED: $TOOL $SCENARIO: $*"
        tail -n 30 "$logf" >&2
        die "$TOOL failed in $SCENARIO (full log: $logf)"
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -n 1 "$tf")
    STEP_WALL=$(awk -v a="$STEP_WALL" -v b="$wall" 'BEGIN{printf "%.2f", a+b}')
    STEP_CPU=$(awk -v a="$STEP_CPU" -v b="$user" -v c="$sys" 'BEGIN{printf "%.2f", a+b+c}')
    if ((rss > STEP_RSS)); then STEP_RSS=$rss; fi
}

# step SCENARIO TOOL FUNCTION: run FUNCTION with $TOOL set, record one result row.
step() {
    SCENARIO=$1 TOOL=$2
    local func=$3
    STEP_WALL=0 STEP_CPU=0 STEP_RSS=0
    REPO=$REPOS/$TOOL
    mkdir -p "$CACHES/$TOOL"
    : >"$LOGS/$SCENARIO-$TOOL.log"
    "$func"
    local size
    size=$(du -sb "$REPO" | cut -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$SCENARIO" "$TOOL" "$STEP_WALL" "$STEP_CPU" "$STEP_RSS" "$size" \
        >>"$RESULTS_TSV"
    log "$SCENARIO $TOOL: wall ${STEP_WALL}s cpu ${STEP_CPU}s rss $((STEP_RSS / 1024))MiB repo $((size / 1048576))MiB"
}

# ---------------------------------------------------------------------------- tools
# Each tool has _init, _backup and _restore; they use $REPO, $DATA, $SCENARIO and, for
# restore, $TARGET (an empty directory), and set RESTORED to where $DATA ended up.

offsite_init() { measure "$OFFSITE" --repo "$REPO" init; }
offsite_backup() {
    measure "$OFFSITE" --repo "$REPO" backup "$DATA" --json
    # The last JSON line is the summary (the stable user surface); say so if it is not.
    tail -n 1 "$LOGS/$SCENARIO-$TOOL.log" | grep -q '"type": *"summary"' ||
        log "WARNING: offsite backup --json did not end with a summary line"
}
offsite_restore() {
    measure "$OFFSITE" --repo "$REPO" restore latest --target "$TARGET"
    RESTORED=$TARGET$DATA
}

# restic: default settings (repository format 2, compression auto).
restic_init() { measure restic -r "$REPO" init; }
restic_backup() { measure restic -r "$REPO" backup "$DATA"; }
restic_restore() {
    measure restic -r "$REPO" restore latest --target "$TARGET"
    RESTORED=$TARGET$DATA
}

# borg: repokey-blake2 encryption; compression zstd,3 (borg's default is lz4) to match the
# zstd level 3 the others use.
export BORG_BASE_DIR=$CACHES/borg
borg_init() { measure borg init -e repokey-blake2 "$REPO"; }
borg_backup() { measure borg create --compression zstd,3 "$REPO::$SCENARIO" "$DATA"; }
borg_restore() {
    local last
    last=$(borg list --last 1 --short "$REPO")
    [[ -n $last ]] || die "borg: no archive in $REPO"
    measure env -C "$TARGET" borg extract "$REPO::$last"
    RESTORED=$TARGET$DATA
}

# rustic: default settings.
rustic_init() { measure rustic -r "$REPO" init; }
rustic_backup() { measure rustic -r "$REPO" backup "$DATA"; }
rustic_restore() {
    measure rustic -r "$REPO" restore latest "$TARGET"
    RESTORED=$TARGET$DATA
    # Depending on version rustic restores the snapshot's paths below the target or
    # the backed-up directory's contents directly into it.
    if [[ ! -d $RESTORED && -d $TARGET/small ]]; then RESTORED=$TARGET; fi
}

# bupstash: an (unencrypted on disk) primary key file, the default zstd compression and
# its own send log so that repeated puts are incremental.
export BUPSTASH_KEY=$REPOS/bupstash.key BUPSTASH_SEND_LOG=$CACHES/bupstash/bupstash.sendlog
bupstash_init() {
    measure bupstash init -r "$REPO"
    measure bupstash new-key -o "$BUPSTASH_KEY"
}
bupstash_backup() {
    measure bupstash put -r "$REPO" "$DATA"
    # put prints the new item's id as the last line of its output.
    BUPSTASH_LAST_ID=$(grep -E '^[0-9a-f]{32}$' "$LOGS/$SCENARIO-$TOOL.log" | tail -n 1)
    [[ -n $BUPSTASH_LAST_ID ]] || die "bupstash put printed no id"
}
bupstash_restore() {
    measure bupstash restore -r "$REPO" --into "$TARGET" "id=$BUPSTASH_LAST_ID"
    RESTORED=$TARGET
}

# ---------------------------------------------------------------------------- scenarios

backup() { "${TOOL}_backup"; }

# Restore into an empty directory, then compare with the source.
verified_restore() {
    TARGET=$RESTORES/$TOOL
    rm -rf "$TARGET"
    mkdir -p "$TARGET"
    RESTORED=
    "${TOOL}_restore"
    log "verifying $TOOL restore: diff -r $DATA $RESTORED"
    if ! diff -r --no-dereference "$DATA" "$RESTORED" >"$LOGS/$SCENARIO-$TOOL.diff" 2>&1; then
        head -n 20 "$LOGS/$SCENARIO-$TOOL.diff" >&2
        die "$TOOL restore differs from the source (see $LOGS/$SCENARIO-$TOOL.diff)"
    fi
    rm -rf "$TARGET"
}

# ---------------------------------------------------------------------------- report

machine_line() {
    local cpu
    cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
    echo "$(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
}

# render_table FORMAT: FORMAT is "text" or "md".
render_table() {
    awk -F'\t' -v fmt="$1" '
        { row[NR] = $0; if ($2 == "offsite") ow[$1] = $3 }
        END {
            if (fmt == "md") {
                print "| scenario | tool | wall s | cpu s | peak RSS MiB | repo MiB | offsite/peer wall |"
                print "|---|---|---:|---:|---:|---:|---:|"
            } else {
                printf "%-12s %-9s %9s %9s %9s %10s %9s\n", "scenario", "tool", "wall s", "cpu s", "RSS MiB", "repo MiB", "off/peer"
            }
            for (i = 1; i <= NR; i++) {
                split(row[i], f, "\t")
                ratio = "-"
                if (f[2] != "offsite" && (f[1] in ow) && f[3] > 0) ratio = sprintf("%.2f", ow[f[1]] / f[3])
                rss = sprintf("%.0f", f[5] / 1024); repo = sprintf("%.1f", f[6] / 1048576)
                if (fmt == "md") printf "| %s | %s | %.2f | %.2f | %s | %s | %s |\n", f[1], f[2], f[3], f[4], rss, repo, ratio
                else printf "%-12s %-9s %9.2f %9.2f %9s %10s %9s\n", f[1], f[2], f[3], f[4], rss, repo, ratio
            }
        }' "$RESULTS_TSV"
}

write_markdown() {
    mkdir -p "$(dirname "$RESULTS_MD")"
    local t
    {
        echo "# offsite benchmark"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- machine: $(machine_line)"
        echo "- command: \`$COMMAND\`"
        echo "- dataset: \`bench/gen.py --scale $BENCH_SCALE --seed $BENCH_SEED\`: $DATA_SUMMARY"
        echo "- mutation: \`bench/gen.py --mutate --scale $BENCH_SCALE --seed $BENCH_MUTATE_SEED\`"
        echo "- tools:"
        for t in "${TOOLS[@]}"; do echo "  - $t: $(tool_version "$t")"; done
        echo "- settings: restic defaults (repository v2, compression auto); borg \`init -e repokey-blake2\`,"
        echo "  \`create --compression zstd,3\`; rustic defaults; bupstash primary key file, default"
        echo "  compression, send log; offsite defaults. All secrets passed through the environment."
        echo "- page cache: warm (not dropped between scenarios; the dataset fits in RAM)."
        echo "- wall and cpu (user+sys) from \`/usr/bin/time\`, peak RSS is the largest of the"
        echo "  step's commands, repo size is \`du -sb\` after the step; 4-restore is verified with \`diff -r\`."
        echo "- offsite/peer wall: offsite's wall time divided by the peer's (below 1 means offsite is faster)."
        echo
        render_table md
    } >"$RESULTS_MD"
}

# ---------------------------------------------------------------------------- main

main() {
    setup_tools
    log "tools: ${TOOLS[*]}"
    for t in "${TOOLS[@]}"; do log "  $(tool_version "$t")"; done
    prepare_data
    DATA_SUMMARY="$(find "$DATA" -type f | wc -l) files, $(du -sb "$DATA" | awk '{printf "%.1f MiB", $1/1048576}')"
    log "dataset: $DATA_SUMMARY"
    # Repositories (~0.7x the data each) plus one restore at a time must fit.
    local need avail
    need=$(du -sb "$DATA" | awk -v n="${#TOOLS[@]}" '{printf "%d", $1 * (0.7 * n + 1.1) / 1024}')
    avail=$(df -Pk "$BENCH_DIR" | awk 'NR==2{print $4}')
    if ((avail < need)); then
        log "WARNING: $BENCH_DIR has $((avail / 1048576)) GiB free, the run may need $((need / 1048576)) GiB"
    fi

    rm -rf "$REPOS" "$CACHES" "$RESTORES" "$LOGS"
    mkdir -p "$REPOS" "$CACHES" "$RESTORES" "$LOGS"
    : >"$RESULTS_TSV"

    local t
    for t in "${TOOLS[@]}"; do
        SCENARIO=0-init TOOL=$t REPO=$REPOS/$t STEP_WALL=0 STEP_CPU=0 STEP_RSS=0
        mkdir -p "$CACHES/$t"
        "${t}_init"
    done
    for t in "${TOOLS[@]}"; do step 1-first "$t" backup; done
    for t in "${TOOLS[@]}"; do step 2-unchanged "$t" backup; done
    mutate_data
    for t in "${TOOLS[@]}"; do step 3-mutated "$t" backup; done
    for t in "${TOOLS[@]}"; do step 4-restore "$t" verified_restore; done

    echo
    echo "Results (warm page cache; $DATA_SUMMARY; scale $BENCH_SCALE):"
    render_table text
    write_markdown
    echo
    echo "Written to $RESULTS_MD; logs in $LOGS"
}

main "$@"
