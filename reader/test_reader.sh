#!/usr/bin/env bash
# End-to-end test of the independent reader against the real offsite binary.
# Usage: reader/test_reader.sh path/to/offsite
# Needs: python3 with reader/requirements.txt installed, setfattr (attr), root for chown/mknod.
set -euo pipefail

OFFSITE=$(realpath "${1:?usage: test_reader.sh path/to/offsite}")
HERE=$(cd "$(dirname "$0")" && pwd)
READER="$HERE/offsite-read"
COMPARE="$HERE/compare_trees.py"
export PYTHONDONTWRITEBYTECODE=1

python3 -c 'import cryptography, zstandard, blake3, argon2' 2>/dev/null || {
    echo "test_reader: missing Python packages: pip install -r $HERE/requirements.txt" >&2
    exit 1
}

WORK=$(mktemp -d)
trap 'chmod -R u+w "$WORK" 2> /dev/null; rm -rf "$WORK"' EXIT
export OFFSITE_PASSWORD='test pässword' OFFSITE_INSECURE_FAST_KDF=testing-only-keys-are-crackable OFFSITE_CACHE_DIR="$WORK/cache"
SRC="$WORK/src"
REPO="$WORK/repo"
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }

# --- source tree: every kind of node the format describes (§8) ---
mkdir -p "$SRC/d1/d2/d3" "$SRC/emptydir"
echo hello > "$SRC/d1/d2/d3/f.txt"
: > "$SRC/empty"
python3 - "$SRC/big" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:  # several chunks: compressible (zstd payloads) then random (raw)
    f.write((b"compressible line of text 0123456789\n" * 120000)[: 3 << 20])
    f.write(os.urandom(3 << 20))
EOF
truncate -s 50M "$SRC/sparse"
printf 'MIDDLE' | dd of="$SRC/sparse" bs=1 seek=26214400 conv=notrunc status=none
truncate -s 1M "$SRC/allhole"
ln -s d1/d2/d3/f.txt "$SRC/link"
ln -s /nonexistent/target "$SRC/dangling"
echo linked > "$SRC/h1"
ln "$SRC/h1" "$SRC/d1/h2"
mkfifo "$SRC/fifo"
mkdir "$SRC/sgid"
echo x > "$SRC/sgid/inside"
chmod 2775 "$SRC/sgid"
chmod 4755 "$SRC/d1/d2/d3/f.txt"
chmod 1777 "$SRC/d1/d2"
echo weird > "$SRC/"$'\xff\xfe'
chmod 0400 "$SRC/empty"
if command -v setfattr > /dev/null; then
    setfattr -n user.x -v y "$SRC/big"
    setfattr -n user.bin -v 0x00ff01 "$SRC/sgid"
else
    echo "note: setfattr missing (apt-get install attr): no xattrs in the tree" >&2
fi
if [ "$(id -u)" = 0 ]; then
    chown 1234:5678 "$SRC/h1"
    chown -h 4321:8765 "$SRC/link"
    mknod "$SRC/null" c 1 3 || echo "note: mknod not permitted here" >&2
fi
mkdir "$SRC/ro" && echo r > "$SRC/ro/file" && chmod 0555 "$SRC/ro"
touch -d '2020-01-02 03:04:05.987654321' "$SRC/d1/d2/d3/f.txt" "$SRC/empty"
touch -h -d '2021-03-04 05:06:07.123456789' "$SRC/link"
touch -d '2019-05-05 01:01:01.5' "$SRC/d1" "$SRC/ro"

# --- repository: two snapshots, so the second has a seen list (§10) ---
"$OFFSITE" -q --repo "$REPO" init
"$OFFSITE" -q --repo "$REPO" backup "$SRC"
echo changed >> "$SRC/d1/h2"
"$OFFSITE" -q --repo "$REPO" backup "$SRC"

# --- listing: the reader sees the same snapshot ids as offsite ---
want=$("$OFFSITE" --repo "$REPO" --json snapshots | python3 -c \
    'import json, sys; print("\n".join(sorted(json.loads(l)["id"] for l in sys.stdin)))')
got=$("$READER" --repo "$REPO" snapshots | cut -d' ' -f1 | sort)
if [ "$want" = "$got" ] && [ "$(echo "$got" | wc -l)" = 2 ]; then ok "snapshots lists the same 2 ids"; else
    fail "snapshot ids differ: offsite [$want] reader [$got]"; fi
listing=$("$READER" --repo "$REPO" snapshots)
grep -q " $SRC\$" <<< "$listing" && ok "snapshots shows the decoded path" ||
    fail "snapshots does not show $SRC"

# --- restore with both, compare (latest, then the first snapshot by id prefix) ---
first=$("$OFFSITE" --repo "$REPO" --json snapshots | python3 -c \
    'import json, sys; print(min((json.loads(l)["time"], json.loads(l)["id"]) for l in sys.stdin)[1])')
for snap in latest "${first:0:10}"; do
    "$OFFSITE" -q --repo "$REPO" restore "$snap" --target "$WORK/A-$snap"
    start=$(date +%s.%N)
    "$READER" --repo "$REPO" restore "$snap" --target "$WORK/B-$snap"
    took=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')")
    if python3 "$COMPARE" "$WORK/A-$snap" "$WORK/B-$snap"; then ok "restore $snap matches offsite ($took s)"; else
        fail "restore $snap differs from offsite"; fi
done
if python3 "$COMPARE" "$SRC" "$WORK/A-latest$SRC" > /dev/null; then ok "offsite's restore matches the source"; else
    echo "note: offsite's own restore differs from the source (not the reader's fault)" >&2; fi
blocks=$(stat -c %b "$WORK/B-latest$SRC/sparse")
if [ "$blocks" -lt 1024 ]; then ok "sparse file restored sparse ($blocks blocks)"; else fail "sparse file not sparse ($blocks blocks)"; fi

# --- a flipped byte in a pack: the reader fails and writes no wrong byte ---
pack=$(ls -S "$REPO"/data/*/* | head -1)
cp -a "$REPO" "$WORK/bad"
badpack="$WORK/bad/${pack#"$REPO"/}"
python3 - "$badpack" <<'EOF'
import os, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 3] ^= 0x01  # the largest pack holds big's chunks; a third in is blob area
open(p, "wb").write(b)
EOF
if "$READER" --repo "$WORK/bad" restore latest --target "$WORK/C" 2> "$WORK/err"; then
    fail "reader accepted a corrupted pack"
else
    grep -q "authentication" "$WORK/err" && ok "corrupted pack refused: $(cat "$WORK/err")" ||
        fail "unexpected error for a corrupted pack: $(cat "$WORK/err")"
fi
python3 - "$WORK/A-latest" "$WORK/C" <<'EOF' && ok "no wrong bytes written before the failure" || fail "wrong bytes written"
import os, sys
good, bad = sys.argv[1], sys.argv[2]
for d, _, files in os.walk(bad):
    for f in files:
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p):
            q = os.path.join(good, os.path.relpath(p, bad))
            if open(p, "rb").read() != open(q, "rb").read():
                sys.exit(f"{p}: content differs")
EOF

# --- other tampering: an object whose content does not match its name, a deleted snapshot ---
cp -a "$REPO" "$WORK/bad2"
idx=$(ls "$WORK"/bad2/index/* | head -1)
# Invert byte 40 (writing a fixed byte there left the object unchanged whenever that byte
# already held it: one run in 256).
python3 - "$idx" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[40] ^= 0xFF
open(sys.argv[1], "wb").write(b)
EOF
if "$READER" --repo "$WORK/bad2" snapshots > /dev/null 2>&1 &&
    ! "$READER" --repo "$WORK/bad2" restore latest --target "$WORK/D" 2> /dev/null; then
    ok "tampered index refused"; else fail "tampered index not refused"; fi
cp -a "$REPO" "$WORK/bad3"
rm "$WORK/bad3/snapshots/$first"  # the older one: the newer one's seen list names it
if "$READER" --repo "$WORK/bad3" snapshots > /dev/null 2> "$WORK/err"; then fail "deleted snapshot not detected"; else
    grep -q "missing but was seen before" "$WORK/err" && ok "deleted snapshot detected (§10)" ||
        fail "unexpected error: $(cat "$WORK/err")"; fi
cp -a "$REPO" "$WORK/v2"
printf '\x03' | dd of="$WORK/v2/config" bs=1 seek=3 conv=notrunc status=none
if "$READER" --repo "$WORK/v2" snapshots 2> "$WORK/err"; then fail "format version 3 accepted"; else
    grep -q "unsupported format version 3" "$WORK/err" && ok "format version 3 refused (§13)" ||
        fail "unexpected error: $(cat "$WORK/err")"; fi
if OFFSITE_PASSWORD=wrong "$READER" --repo "$REPO" snapshots 2> /dev/null; then fail "wrong passphrase accepted"; else
    ok "wrong passphrase refused"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
