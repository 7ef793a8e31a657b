#!/usr/bin/env bash
# A/B timing of two offsite binaries on one dataset, alternating, $N rounds: a first backup
# into a fresh repository, an unchanged re-backup, a restore. Prints wall, user+sys CPU, peak
# RSS and repository bytes per run (docs/PERFORMANCE.md, "Format 2 against format 1").
#
#   A=/path/offsite-old B=/path/offsite-new DATA=bench/work/data N=3 bash scripts/format-ab.sh
#
# WORK (default /tmp/offsite-ab) holds the repositories, caches and restores; RESTORE_TO
# (default $WORK) is where restores go (a tmpfs such as /dev/shm keeps disk writeback out of
# the figures).
set -euo pipefail
N=${N:-3}
: "${A:?set A to the first binary}" "${B:?set B to the second binary}" "${DATA:?set DATA to the dataset}"
WORK=${WORK:-/tmp/offsite-ab}
RESTORE_TO=${RESTORE_TO:-$WORK}
export OFFSITE_PASSWORD=offsite-ab-bench
mkdir -p "$WORK"
for r in $(seq 1 "$N"); do
    for v in A B; do
        bin=${!v}
        rm -rf "$WORK/repo$v" "$WORK/cache$v" "$RESTORE_TO/restore$v"
        export OFFSITE_REPOSITORY=$WORK/repo$v OFFSITE_CACHE_DIR=$WORK/cache$v
        "$bin" init >/dev/null 2>&1
        for step in first unchanged restore; do
            if [[ $step == restore ]]; then
                cmd=("$bin" restore latest --target "$RESTORE_TO/restore$v")
            else
                cmd=("$bin" backup "$DATA")
            fi
            /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "${cmd[@]}" >/dev/null 2>&1
            read -r e u s m <"$WORK/time"
            printf 'round %s %s %-9s wall %6.2f cpu %6.2f rss %4d MiB repo %s\n' "$r" "$v" "$step" "$e" \
                "$(echo "$u + $s" | bc)" $((m / 1024)) "$(du -sb "$WORK/repo$v" | cut -f1)"
        done
        rm -rf "$RESTORE_TO/restore$v"
    done
done
