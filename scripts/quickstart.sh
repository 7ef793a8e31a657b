#!/usr/bin/env bash
# Quick start: build offsite, back up a small sample tree into a new local repository,
# list the snapshots, restore the latest one and check it equals the source.
#
#   bash scripts/quickstart.sh
#
# Everything is created in a fresh temporary directory, which is kept so you can look
# around (its path is printed at the end). Exits non-zero on the first failure.

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
trap 'echo "quickstart: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR

run() {
    printf '\n+ %s\n' "$*"
    if ! "$@"; then
        echo "quickstart: FAILED: $*" >&2
        exit 1
    fi
}

# 1. Build the binary.
run cargo build --release --manifest-path "$ROOT/Cargo.toml"
OFFSITE=${CARGO_TARGET_DIR:-$ROOT/target}/release/offsite
[[ -x $OFFSITE ]] || { echo "quickstart: $OFFSITE was not built" >&2; exit 1; }

# 2. A small sample tree: text files, a subdirectory, an empty directory, a binary file
#    larger than one chunk and a symlink.
DEMO=$(mktemp -d "${TMPDIR:-/tmp}/offsite-quickstart.XXXXXX")
SRC=$DEMO/source
REPO=$DEMO/repo
TARGET=$DEMO/restore
mkdir -p "$SRC/docs/notes" "$SRC/empty"
printf 'Hello from offsite.\n' >"$SRC/hello.txt"
printf 'Shopping list:\n- bread\n- coffee\n' >"$SRC/docs/list.txt"
for i in $(seq 1 200); do echo "note line $i: the quick brown fox jumps over the lazy dog"; done \
    >"$SRC/docs/notes/notes.txt"
head -c 3000000 /dev/urandom >"$SRC/photo.bin"
ln -s docs/list.txt "$SRC/list-link"

# 3. A repository with a demo passphrase (use OFFSITE_PASSWORD_FILE or the prompt for real data).
export OFFSITE_PASSWORD=quickstart-demo-passphrase
run "$OFFSITE" --repo "$REPO" init
run "$OFFSITE" --repo "$REPO" backup "$SRC"
run "$OFFSITE" --repo "$REPO" snapshots
run "$OFFSITE" --repo "$REPO" check

# 4. Restore: each backed-up absolute path is recreated below the target.
run "$OFFSITE" --repo "$REPO" restore latest --target "$TARGET"
RESTORED=$TARGET$SRC
run diff -r --no-dereference "$SRC" "$RESTORED"
[[ -L $RESTORED/list-link && $(readlink "$RESTORED/list-link") == docs/list.txt ]] || {
    echo "quickstart: the symlink was not restored as a symlink to docs/list.txt" >&2
    exit 1
}
[[ -d $RESTORED/empty ]] || { echo "quickstart: the empty directory was not restored" >&2; exit 1; }

cat <<EOF

quickstart: OK, the restored tree is identical to the source.
  binary:     $OFFSITE
  source:     $SRC
  repository: $REPO   (passphrase: $OFFSITE_PASSWORD)
  restored:   $RESTORED
Try:  OFFSITE_PASSWORD=$OFFSITE_PASSWORD $OFFSITE --repo $REPO snapshots
Remove it all with:  rm -rf $DEMO
EOF
