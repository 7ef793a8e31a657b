#!/usr/bin/env bash
# The full counts of the reliability suites (issue 4). CI runs a small slice of the same tests
# (100 kills, 1,000 flips); this script runs them at full size and prints one summary line per
# suite, for docs/RELIABILITY.md.
#
#   bash scripts/reliability.sh                 # everything at full size (hours on 2 cores)
#   KILLS=2000 FLIPS=100000 bash scripts/reliability.sh
#   SUITES="flips" bash scripts/reliability.sh  # one suite
#   DEADLINE=3600 bash scripts/reliability.sh   # stop starting new kill batches after 1 h
#
# Suites:
#   flips  crates/engine/tests/corruption.rs, OFFSITE_FLIPS=$FLIPS (default 100,000)
#   kills  crates/cli/tests/crash.rs sigkill_at_random_moments, $KILLS kills (default 10,000)
#          in batches of $BATCH (default 500, one fresh repository each) with seeds
#          $SEED, $SEED+1, ...; a batch that fails stops the run and names its seed
#   points crates/cli/tests/crash.rs every_failpoint_crossing_is_crash_safe (enumerated)
#   big    crates/cli/tests/crash.rs one_backup_interrupted_ten_times..., source of
#          $BIG_MIB MiB (default 10240: the size at which the 1.1x upload bound is asserted;
#          needs ~22 GiB of free disk)
# Logs go to $OUT (default target/reliability/).

set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FLIPS=${FLIPS:-100000}
KILLS=${KILLS:-10000}
BATCH=${BATCH:-500}
SEED=${SEED:-20261122}
BIG_MIB=${BIG_MIB:-10240}
SUITES=${SUITES:-flips kills points big}
DEADLINE=${DEADLINE:-0}
OUT=${OUT:-${CARGO_TARGET_DIR:-target}/reliability}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export CI=true
START=$(date +%s)

say() { printf '[reliability %s +%ds] %s\n' "$(date -u +%H:%M:%S)" $(($(date +%s) - START)) "$*"; }

# Build once, then run copies of the test binaries and of `offsite` from $OUT/bin: a build
# started while the suites run (hours) then neither changes nor breaks what is tested.
test_binary() { # crate test -> path of the test executable
    cargo test --release -p "$1" --test "$2" --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$/\1/p' | tail -n 1
}
mkdir -p "$OUT/bin"
cp "$(test_binary offsite-engine corruption)" "$OUT/bin/corruption"
cp "$(test_binary offsite-cli crash)" "$OUT/bin/crash"
cp "${CARGO_TARGET_DIR:-target}/release/offsite" "$OUT/bin/offsite"
export OFFSITE_TEST_BIN=$OUT/bin/offsite
# Run each from its crate's directory, as `cargo test` does.
corruption() { (cd crates/engine && "$OUT/bin/corruption" "$@"); }
crash() { (cd crates/cli && "$OUT/bin/crash" "$@"); }

for suite in $SUITES; do
    case $suite in
    flips)
        say "corruption: $FLIPS flips"
        OFFSITE_FLIPS=$FLIPS corruption \
            --exact every_flipped_byte_is_detected_and_never_restored --nocapture >"$OUT/flips.log" 2>&1
        say "$(grep -E '^corruption: flips=' "$OUT/flips.log" | tail -n 1)"
        ;;
    kills)
        done_kills=0
        batch_seed=$SEED
        while ((done_kills < KILLS)); do
            if ((DEADLINE > 0 && $(date +%s) - START > DEADLINE)); then
                say "deadline reached: stopping after $done_kills kills"
                break
            fi
            n=$((KILLS - done_kills < BATCH ? KILLS - done_kills : BATCH))
            log="$OUT/kills-$batch_seed.log"
            if ! OFFSITE_CRASH_KILLS=$n OFFSITE_CRASH_SEED=$batch_seed crash --exact sigkill_at_random_moments --nocapture >"$log" 2>&1; then
                say "FAILED: kill batch with OFFSITE_CRASH_SEED=$batch_seed (log: $log)"
                exit 1
            fi
            done_kills=$((done_kills + n))
            say "kills: batch seed=$batch_seed $(grep -E '^crash: kills=' "$log" | tail -n 1) (total $done_kills)"
            batch_seed=$((batch_seed + 1))
        done
        say "kills: $done_kills of $KILLS kills run, 0 violations"
        ;;
    points)
        say "failpoints: every crossing"
        crash --exact every_failpoint_crossing_is_crash_safe \
            --nocapture >"$OUT/points.log" 2>&1
        say "$(grep -E '^crash:' "$OUT/points.log" | tail -n 3 | tr '\n' ' ')"
        ;;
    big)
        say "interrupted ten times: $BIG_MIB MiB"
        OFFSITE_CRASH_BIG_MIB=$BIG_MIB crash --exact \
            one_backup_interrupted_ten_times_restores_identical_within_the_upload_bound --nocapture \
            >"$OUT/big.log" 2>&1
        say "$(grep -E '^crash:' "$OUT/big.log" | tail -n 3 | tr '\n' ' ')"
        ;;
    *)
        echo "unknown suite '$suite' (flips kills points big)" >&2
        exit 1
        ;;
    esac
done
say "done"
