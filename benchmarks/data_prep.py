"""Preparing a big plain-text corpus: peak memory and end-to-end throughput, tokenizer training included.

    python benchmarks/data_prep.py [--sizes 50,200,1000] [--out runs/data-prep]

For each size (MB), one .txt file is made by repeating the bundled training text (documents separated by a blank
line), then `stackwise`'s data preparation (`data.prepare`: BPE on a `data.tokenizer_sample_mb` sample, then
streaming tokenization of the whole file into a token file) runs in a fresh process with an empty cache. Its wall
time and the peak resident memory of its whole process tree (it and its worker processes, summed:
peak_memory.py) are recorded; sizes run one after another, never two at once.
Prints a markdown table (also written to OUT/data_prep.md).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import shutil
import string
import subprocess
import sys
from pathlib import Path

import peak_memory

BUNDLED = Path(__file__).parents[1] / "src" / "stackwise" / "data" / "bundled" / "train.jsonl.xz"
PREPARE = """
import sys
from stackwise import config, data
cfg = config.load("default", {"data.train": sys.argv[1], "data.val": "bundled"})
prep = data.prepare(cfg, log=lambda *_: None)
print(len(prep.train))
"""


def make_corpus(path: Path, mb: int, fresh_words: bool = False) -> int:
    """The bundled text repeated to `mb` MB; with fresh_words, each repetition after the first has its letters
    permuted (a seeded substitution per repetition), so no word repeats across repetitions: a corpus whose
    vocabulary keeps growing, the hard case for a cache of words."""
    with lzma.open(BUNDLED, "rt") as f:
        text = "\n\n".join(json.loads(line)["text"] for line in f) + "\n\n"
    rng = random.Random(0)
    target = mb * 10**6
    with path.open("wb") as f:
        written, rep = 0, 0
        while written < target:
            block = text
            if fresh_words and rep:
                lower = list(string.ascii_lowercase)
                rng.shuffle(lower)
                table = str.maketrans(string.ascii_lowercase + string.ascii_uppercase,
                                      "".join(lower) + "".join(lower).upper())
                block = text.translate(table)
            piece = block.encode()[:target - written]
            f.write(piece)
            written += len(piece)
            rep += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,200,1000", help="corpus sizes in MB (10^6 bytes)")
    ap.add_argument("--out", default="runs/data-prep")
    ap.add_argument("--fresh-words", action="store_true",
                    help="permute the letters of each repetition of the bundled text (a growing vocabulary)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mb in (int(x) for x in args.sizes.split(",")):
        corpus = out / f"corpus-{mb}mb.txt"
        size = make_corpus(corpus, mb, args.fresh_words)
        cache = out / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        with (out / f"prepare-{mb}mb.log").open("w") as log:
            code, seconds, peak, _ = peak_memory.run([sys.executable, "-c", PREPARE, str(corpus)], stdout=log,
                                                     stderr=subprocess.STDOUT,
                                                     env={**os.environ, "STACKWISE_CACHE": str(cache)})
        tokens = (out / f"prepare-{mb}mb.log").read_text().strip().splitlines()[-1] if code == 0 else "failed"
        rows.append({"mb": size / 1e6, "seconds": seconds, "mb_per_s": size / 1e6 / seconds,
                     "peak_gib": peak / 2**30, "tokens": tokens, "exit": code})
        print(f"{size / 1e6:.0f} MB: {seconds:.0f} s, {size / 1e6 / seconds:.2f} MB/s, peak "
              f"{peak / 2**30:.2f} GiB, {tokens} tokens (exit {code})", flush=True)
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
