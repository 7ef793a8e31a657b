#!/usr/bin/env python3
"""compare_trees.py A B: exit 1 naming every difference between two restored trees.

Compared for every entry below A and B (the roots themselves are not compared): type, mode
(incl. setuid/setgid/sticky), uid, gid, mtime_ns, size, content, device numbers, xattrs,
symlink targets, hard-link groups; and for files sparse in A, that B allocates no more.
Never follows symlinks.
"""
import hashlib
import os
import stat
import sys


def describe(root):
    entries, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(root))
            st = os.lstat(full)
            e = {
                "type": stat.S_IFMT(st.st_mode),
                "mode": oct(stat.S_IMODE(st.st_mode)),
                "uid": st.st_uid,
                "gid": st.st_gid,
                "mtime_ns": st.st_mtime_ns,
                "xattrs": sorted((x, os.getxattr(full, x, follow_symlinks=False))
                                 for x in os.listxattr(full, follow_symlinks=False)),
            }
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                e["size"], e["sha256"] = st.st_size, h.hexdigest()
                e["_blocks"] = st.st_blocks
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            entries[rel] = e
    groups = sorted(sorted(g) for g in inodes.values())
    return entries, groups


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare_trees.py A B")
    (a, ga), (b, gb) = describe(sys.argv[1]), describe(sys.argv[2])
    problems = []
    for rel in sorted(set(a) | set(b)):
        shown = rel.decode("utf-8", "backslashreplace")
        if rel not in a or rel not in b:
            problems.append(f"{shown}: only in {sys.argv[1] if rel in a else sys.argv[2]}")
            continue
        ea, eb = a[rel], b[rel]
        for k in sorted(set(ea) | set(eb)):
            if not k.startswith("_") and ea.get(k) != eb.get(k):
                problems.append(f"{shown}: {k} differs: {ea.get(k)!r} vs {eb.get(k)!r}")
        if "_blocks" in ea and ea["_blocks"] * 512 < ea["size"] and eb.get("_blocks", 0) > ea["_blocks"]:
            problems.append(f"{shown}: not sparse: {eb['_blocks']} blocks vs {ea['_blocks']}")
    if ga != gb:
        problems.append(f"hard-link groups differ: {ga!r} vs {gb!r}")
    for p in problems:
        print(f"compare_trees: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"compare_trees: {len(a)} entries identical, {len(ga)} hard-link group(s)")


if __name__ == "__main__":
    main()
