#!/usr/bin/env python3
"""Deterministic benchmark dataset for offsite and its peers (Python 3 stdlib only).

    gen.py DIR [--scale F] [--seed S]            write the dataset into DIR (must be empty or absent)
    gen.py --mutate DIR [--scale F] [--seed S]   change the dataset in place

At --scale 1.0 the dataset is about 3.7 GiB:

  small/   50,000 text files of 0.5-16 KiB (prose, code and config-like lines), in a
           nested tree up to 4 levels deep (fan-out chosen from the file count, about 20
           files per directory)
  large/   log-N.log     3 log-like text files, 1.5 GiB in total (repetitive: zstd -3
                         compresses them about 6x), sizes 768, 512 and 256 MiB
           random-N.bin  3 files of random bytes, 2 GiB in total (incompressible),
                         sizes 1024, 640 and 384 MiB

Every count and size is multiplied by --scale (at least one small file, at least 4 KiB per
large file). The same --scale and --seed always give byte-identical files.

--mutate changes, deterministically from --seed: 1% of the small files (content rewritten,
new size), appends 16 MiB * scale of log lines to large/log-0.log, and overwrites
1 MiB * scale in the middle of large/random-0.bin in place (same size). Pass the same
--scale that generated DIR so the changes stay proportional.
"""

import argparse
import os
import random
import sys
import time

KIB = 1024
MIB = 1024 * KIB

SMALL_FILES = 50_000
SMALL_MIN = 512
SMALL_MAX = 16 * KIB
FILES_PER_DIR = 20
DEPTH = 4
LOG_SIZES = (768 * MIB, 512 * MIB, 256 * MIB)
RANDOM_SIZES = (1024 * MIB, 640 * MIB, 384 * MIB)
MUTATE_FRACTION = 0.01
MUTATE_APPEND = 16 * MIB
MUTATE_REWRITE = 1 * MIB
BLOCK = 16 * MIB  # write granularity for large files

SYLLABLES = (
    "ka ri to mo na se lu pa di ve an or el is um ex tra con pre sub ment tion able"
    " ing er ly ro sa ni be que ta go fi ma ho de la"
).split()


def make_vocabulary(rng, n):
    """Pseudo-words with a Zipf-like weight so frequent words repeat as in real text."""
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    words = sorted(words)
    rng.shuffle(words)
    weights = [1.0 / (i + 1) for i in range(n)]
    return words, weights


class TextPool:
    """A pool of distinct lines (prose, code, config); files are random line selections.

    Picking whole lines at random keeps text statistics realistic while avoiding long
    byte runs shared between files, which would flatter small-chunk deduplication.
    """

    def __init__(self, rng, lines=60_000):
        words, weights = make_vocabulary(rng, 4000)
        cum = []
        total = 0.0
        for w in weights:
            total += w
            cum.append(total)
        pool = []
        for _ in range(lines):
            kind = rng.random()
            if kind < 0.55:
                n = rng.randint(4, 16)
                ws = rng.choices(words, cum_weights=cum, k=n)
                line = " ".join(ws).capitalize() + rng.choice(".,.;:?!.")
            elif kind < 0.85:
                a, b, c = rng.choices(words, cum_weights=cum, k=3)
                indent = "    " * rng.randint(0, 3)
                line = rng.choice(
                    (
                        f"{indent}let {a}_{b} = {c}({a}, {rng.randint(0, 999)});",
                        f"{indent}if {a}.{b}() > {rng.randint(0, 64)} {{ return {c}; }}",
                        f"{indent}fn {a}_{b}(&self, {c}: usize) -> Result<{b.capitalize()}> {{",
                        f"{indent}// {a} {b} {c}: see #{rng.randint(1, 9999)}",
                        f"{indent}}}",
                    )
                )
            else:
                a, b = rng.choices(words, cum_weights=cum, k=2)
                line = rng.choice(
                    (
                        f"{a}.{b} = {rng.randint(0, 100000)}",
                        f'{a}_{b} = "{rng.choice(words)}/{rng.choice(words)}"',
                        f"[{a}.{b}]",
                        f"{a}: {rng.random():.4f}",
                    )
                )
            pool.append(line)
        self.lines = pool
        self.words = words
        self.cum = cum

    def text(self, rng, size):
        """About `size` bytes (exactly `size` after truncation) of newline-separated text."""
        out = []
        n = 0
        while n < size:
            chunk = rng.choices(self.lines, k=max(8, (size - n) // 40))
            for line in chunk:
                out.append(line)
                n += len(line) + 1
                if n >= size:
                    break
        data = ("\n".join(out) + "\n").encode()
        return data[:size]


class LogWriter:
    """Log-like lines: timestamps, levels, a few hundred message templates, varying ids."""

    LEVELS = ("INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR")

    def __init__(self, rng, pool):
        comps = [f"{a}::{b}" for a, b in zip(rng.choices(pool.words[:300], k=40),
                                              rng.choices(pool.words[:300], k=40))]
        self.templates = []
        for _ in range(400):
            comp = rng.choice(comps)
            msg = " ".join(rng.choices(pool.words[:500], k=rng.randint(3, 9)))
            tail = rng.choice(
                (
                    "id={id} took={ms}ms",
                    "request id={id} status=200 bytes={n}",
                    "retrying id={id} attempt={small}",
                    "peer 10.0.{small}.{n8} latency={ms}ms",
                    "batch={id} items={n} ok",
                )
            )
            self.templates.append(f"{comp}: {msg} {tail}")
        # Pre-render a large set of distinct message bodies; lines pick from them at random
        # so the text repeats like a real log without long identical runs.
        self.bodies = []
        for _ in range(200_000):
            t = rng.choice(self.templates)
            self.bodies.append(
                t.format(
                    id=f"{rng.getrandbits(40):010x}",
                    ms=rng.randint(0, 5000),
                    n=rng.randint(0, 1 << 20),
                    small=rng.randint(0, 9),
                    n8=rng.randint(0, 255),
                )
            )
        self.t = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms

    def block(self, rng, size):
        out = []
        n = 0
        t = self.t
        levels = [f"{lv:<5}" for lv in self.LEVELS]
        sec = None
        prefix = ""
        while n < size:
            bodies = rng.choices(self.bodies, k=2000)
            lv = rng.choices(levels, k=2000)
            steps = rng.choices((0, 1, 1, 2, 3, 5, 8, 13, 40), k=2000)
            for body, level, step in zip(bodies, lv, steps):
                t += step
                s, ms = divmod(t, 1000)
                if s != sec:  # formatting the date once per second keeps this fast
                    sec = s
                    prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
                line = f"{prefix}.{ms:03d}Z {level} {body}\n"
                out.append(line)
                n += len(line)
        self.t = t
        return "".join(out).encode()[:size]


def small_dirs(rng, nfiles):
    """Relative directory paths for the small-file tree, 1..DEPTH levels deep."""
    ndirs = max(1, nfiles // FILES_PER_DIR)
    fanout = max(2, round(ndirs ** (1.0 / DEPTH)))
    dirs = []

    def walk(prefix, level):
        for i in range(rng.randint(max(1, fanout // 2), fanout + fanout // 2)):
            path = f"{prefix}/d{level}-{i:03d}" if prefix else f"d{level}-{i:03d}"
            dirs.append(path)
            if level < DEPTH:
                walk(path, level + 1)

    walk("", 1)
    return dirs


def small_size(rng):
    # Log-uniform between 0.5 and 16 KiB: many small files, some larger ones.
    return int(SMALL_MIN * (SMALL_MAX / SMALL_MIN) ** rng.random())


def scaled(n, scale, minimum):
    return max(minimum, int(n * scale))


def write_large(path, size, produce):
    with open(path, "wb") as f:
        left = size
        while left > 0:
            data = produce(min(BLOCK, left))
            f.write(data)
            left -= len(data)


def generate(root, scale, seed):
    if os.path.exists(root) and os.listdir(root):
        sys.exit(f"gen.py: {root} is not empty; remove it first")
    rng = random.Random(f"offsite-bench-{seed}")
    t0 = time.monotonic()
    pool = TextPool(rng)

    nsmall = scaled(SMALL_FILES, scale, 1)
    dirs = small_dirs(rng, nsmall)
    small_root = os.path.join(root, "small")
    for d in dirs:
        os.makedirs(os.path.join(small_root, d), exist_ok=True)
    small_bytes = 0
    for i in range(nsmall):
        d = rng.choice(dirs)
        data = pool.text(rng, small_size(rng))
        with open(os.path.join(small_root, d, f"f{i:06d}.txt"), "wb") as f:
            f.write(data)
        small_bytes += len(data)
    t1 = time.monotonic()

    large_root = os.path.join(root, "large")
    os.makedirs(large_root, exist_ok=True)
    logs = LogWriter(rng, pool)
    log_bytes = 0
    for i, size in enumerate(LOG_SIZES):
        size = scaled(size, scale, 4 * KIB)
        write_large(os.path.join(large_root, f"log-{i}.log"), size, lambda n: logs.block(rng, n))
        log_bytes += size
    t2 = time.monotonic()

    rand_bytes = 0
    for i, size in enumerate(RANDOM_SIZES):
        size = scaled(size, scale, 4 * KIB)
        write_large(os.path.join(large_root, f"random-{i}.bin"), size, rng.randbytes)
        rand_bytes += size
    t3 = time.monotonic()

    total = small_bytes + log_bytes + rand_bytes
    print(
        f"gen.py: {root}: scale={scale} seed={seed} total={total / MIB:.1f} MiB\n"
        f"  small:  {nsmall} files in {len(dirs)} dirs, {small_bytes / MIB:.1f} MiB "
        f"({t1 - t0:.1f} s)\n"
        f"  logs:   {len(LOG_SIZES)} files, {log_bytes / MIB:.1f} MiB ({t2 - t1:.1f} s)\n"
        f"  random: {len(RANDOM_SIZES)} files, {rand_bytes / MIB:.1f} MiB ({t3 - t2:.1f} s)\n"
        f"  time:   {t3 - t0:.1f} s"
    )


def mutate(root, scale, seed):
    small_root = os.path.join(root, "small")
    large_root = os.path.join(root, "large")
    log0 = os.path.join(large_root, "log-0.log")
    rnd0 = os.path.join(large_root, "random-0.bin")
    for p in (small_root, log0, rnd0):
        if not os.path.exists(p):
            sys.exit(f"gen.py: {p} missing: is {root} a dataset written by gen.py?")
    rng = random.Random(f"offsite-bench-mutate-{seed}")
    t0 = time.monotonic()
    pool = TextPool(rng, lines=20_000)

    files = []
    for dirpath, dirnames, filenames in os.walk(small_root):
        dirnames.sort()
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    files.sort()
    k = max(1, round(len(files) * MUTATE_FRACTION))
    for path in rng.sample(files, k):
        with open(path, "wb") as f:
            f.write(pool.text(rng, small_size(rng)))

    append = scaled(MUTATE_APPEND, scale, 4 * KIB)
    logs = LogWriter(rng, pool)
    logs.t += 400 * 86_400_000  # later than anything already in the file
    with open(log0, "ab") as f:
        left = append
        while left > 0:
            data = logs.block(rng, min(BLOCK, left))
            f.write(data)
            left -= len(data)

    rewrite = scaled(MUTATE_REWRITE, scale, 4 * KIB)
    size = os.path.getsize(rnd0)
    rewrite = min(rewrite, size)
    offset = rng.randrange(0, size - rewrite + 1) if size > rewrite else 0
    with open(rnd0, "r+b") as f:
        f.seek(offset)
        f.write(rng.randbytes(rewrite))
    print(
        f"gen.py: mutated {root}: {k}/{len(files)} small files rewritten, "
        f"{append / MIB:.2f} MiB appended to {os.path.relpath(log0, root)}, "
        f"{rewrite / MIB:.2f} MiB rewritten at offset {offset} of "
        f"{os.path.relpath(rnd0, root)} ({time.monotonic() - t0:.1f} s)"
    )


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    ap.add_argument("dir", help="dataset directory")
    ap.add_argument("--scale", type=float, default=1.0, help="size multiplier (default 1.0)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--mutate", action="store_true", help="mutate DIR in place instead of writing it")
    args = ap.parse_args()
    if args.scale <= 0:
        ap.error("--scale must be positive")
    if args.mutate:
        mutate(args.dir, args.scale, args.seed)
    else:
        generate(args.dir, args.scale, args.seed)


if __name__ == "__main__":
    main()
