#!/usr/bin/env python3
"""Picks a small seed set from a libFuzzer merge control file.

    mkdir -p /tmp/empty
    target/x86_64-unknown-linux-gnu/release/TARGET -set_cover_merge=1 \
        -merge_control_file=CF /tmp/empty corpus/TARGET
    python3 tools/pick_seeds.py CF seeds/TARGET [--max-files 40] [--max-size 4096]

With -set_cover_merge=1 the control file lists every feature of every
input (with -merge=1 only those no smaller input had), which the greedy
choice below needs.

Greedy set cover over libFuzzer's features: repeatedly takes the input
that adds the most features not yet covered (ties to the smaller one),
among inputs of at most --max-size bytes, until --max-files are taken or
nothing adds anything. Copies them into the seed directory, named by
content hash.
"""
import argparse
import hashlib
import os
import shutil


def parse(path):
    with open(path) as f:
        lines = f.read().splitlines()
    n = int(lines[0])
    files = lines[2 : 2 + n]
    feats, sizes = {}, {}
    for line in lines[2 + n :]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "STARTED":
            sizes[int(parts[1])] = int(parts[2])
        elif parts[0] == "FT":
            feats[int(parts[1])] = set(parts[2:])
    return files, feats, sizes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("control_file")
    ap.add_argument("out_dir")
    ap.add_argument("--max-files", type=int, default=40)
    ap.add_argument("--max-size", type=int, default=4096)
    a = ap.parse_args()
    files, feats, sizes = parse(a.control_file)
    pool = {i: f for i, f in feats.items() if sizes.get(i, 1 << 30) <= a.max_size}
    covered, picked = set(), []
    while pool and len(picked) < a.max_files:
        best = max(pool, key=lambda i: (len(pool[i] - covered), -sizes[i]))
        gain = len(pool[best] - covered)
        if gain == 0:
            break
        covered |= pool.pop(best)
        picked.append(best)
    os.makedirs(a.out_dir, exist_ok=True)
    total = 0
    for i in picked:
        data = open(files[i], "rb").read()
        total += len(data)
        name = hashlib.sha1(data).hexdigest()
        shutil.copyfile(files[i], os.path.join(a.out_dir, name))
    allf = set().union(*feats.values()) if feats else set()
    print(
        f"{len(picked)} seeds, {total} bytes, {len(covered)} of {len(allf)} features"
    )


if __name__ == "__main__":
    main()
