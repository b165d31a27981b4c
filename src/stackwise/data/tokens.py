"""Token files: a 32-byte header, then the ids as little-endian uint16 (uint32 when the vocab needs it).

Header: magic b"STKWTOK1" (8 bytes) | itemsize uint32 | reserved uint32 | n_tokens uint64 | vocab_size uint64.
Files are written once (to a temp name, then renamed) and read back memory-mapped.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from stackwise.errors import UserError

MAGIC = b"STKWTOK1"
HEADER = struct.Struct("<8sIIQQ")  # 32 bytes


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def write(path: Path, ids: np.ndarray, vocab_size: int) -> None:
    """A whole token file at once (see Writer)."""
    writer = Writer(path, vocab_size)
    writer.append(ids)
    writer.close()


class Writer:
    """A token file written incrementally: `append` arrays of ids, then `close` fills in the header, fsyncs and renames
    the temporary file into place. Until then only `NAME.tmp-PID` exists, which nothing reads: an interrupted
    preparation leaves no file a later run trusts, and the next one starts that split again. The temporary name is
    the writer's own, so runs started together on a cold cache (`compare --jobs`) each build the file and the last
    rename wins (same content), instead of truncating each other's file."""

    def __init__(self, path: Path, vocab_size: int):
        self.path, self.vocab_size, self.dtype, self.n = path, vocab_size, dtype_for(vocab_size), 0
        self.tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{id(self):x}")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by close())
        self.file.write(HEADER.pack(MAGIC, self.dtype.itemsize, 0, 0, vocab_size))

    def append(self, ids: np.ndarray) -> None:
        assert ids.size == 0 or int(ids.max()) < self.vocab_size
        self.file.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self.n += ids.size

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(HEADER.pack(MAGIC, self.dtype.itemsize, 0, self.n, self.vocab_size))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished file (an error or Ctrl-C while preparing)."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def read(path: Path) -> np.ndarray:
    """The token ids, memory-mapped read-only."""
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise UserError(f"{path}: not a stackwise token file (too short)")
    magic, itemsize, _, n, _vocab = HEADER.unpack(raw)
    if magic != MAGIC or itemsize not in (2, 4):
        raise UserError(f"{path}: not a stackwise token file")
    if os.path.getsize(path) != HEADER.size + n * itemsize:
        raise UserError(f"{path}: truncated token file")
    return np.memmap(path, dtype=f"<u{itemsize}", mode="r", offset=HEADER.size, shape=(n,))
