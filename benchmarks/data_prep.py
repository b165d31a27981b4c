"""Preparing a big plain-text corpus: peak memory and end-to-end throughput, tokenizer training included.

    python benchmarks/data_prep.py [--sizes 50,200,1000] [--out runs/data-prep]

For each size (MB), one .txt file is made by repeating the bundled training text (documents separated by a blank
line), then `stackwise`'s data preparation (`data.prepare`: BPE on a `data.tokenizer_sample_mb` sample, then
streaming tokenization of the whole file into a token file) runs in a fresh process with an empty cache. Its wall
time and its own peak resident memory (`wait4`) are recorded; sizes run one after another, never two at once.
Prints a markdown table (also written to OUT/data_prep.md).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BUNDLED = Path(__file__).parents[1] / "src" / "stackwise" / "data" / "bundled" / "train.jsonl.xz"
PREPARE = """
import sys
from stackwise import config, data
cfg = config.load("default", {"data.train": sys.argv[1], "data.val": "bundled"})
prep = data.prepare(cfg, log=lambda *_: None)
print(len(prep.train))
"""


def make_corpus(path: Path, mb: int) -> int:
    with lzma.open(BUNDLED, "rt") as f:
        text = "\n\n".join(json.loads(line)["text"] for line in f) + "\n\n"
    block = text.encode()
    target = mb * 10**6
    with path.open("wb") as f:
        written = 0
        while written < target:
            piece = block[:target - written]
            f.write(piece)
            written += len(piece)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,200,1000", help="corpus sizes in MB (10^6 bytes)")
    ap.add_argument("--out", default="runs/data-prep")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mb in (int(x) for x in args.sizes.split(",")):
        corpus = out / f"corpus-{mb}mb.txt"
        size = make_corpus(corpus, mb)
        cache = out / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        t0 = time.monotonic()
        with (out / f"prepare-{mb}mb.log").open("w") as log:
            proc = subprocess.Popen([sys.executable, "-c", PREPARE, str(corpus)], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "STACKWISE_CACHE": str(cache)})
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - t0
        code = os.waitstatus_to_exitcode(status)
        tokens = (out / f"prepare-{mb}mb.log").read_text().strip().splitlines()[-1] if code == 0 else "failed"
        rows.append({"mb": size / 1e6, "seconds": seconds, "mb_per_s": size / 1e6 / seconds,
                     "peak_gib": usage.ru_maxrss / 2**20, "tokens": tokens, "exit": code})
        print(f"{size / 1e6:.0f} MB: {seconds:.0f} s, {size / 1e6 / seconds:.2f} MB/s, peak "
              f"{usage.ru_maxrss / 2**20:.2f} GiB, {tokens} tokens (exit {code})", flush=True)
        corpus.unlink()
        shutil.rmtree(cache, ignore_errors=True)
    table = ["| corpus | end-to-end time | MB/s | peak memory | training tokens |", "|---:|---:|---:|---:|---:|"]
    table += [f"| {r['mb']:.0f} MB | {r['seconds']:.0f} s | {r['mb_per_s']:.2f} | {r['peak_gib']:.2f} GiB | "
              f"{r['tokens']} |" for r in rows]
    (out / "data_prep.md").write_text("\n".join(table) + "\n")
    (out / "data_prep.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
