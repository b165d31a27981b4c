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
    dtype = dtype_for(vocab_size)
    assert ids.size == 0 or int(ids.max()) < vocab_size
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(HEADER.pack(MAGIC, dtype.itemsize, 0, ids.size, vocab_size))
        f.write(np.ascontiguousarray(ids, dtype=dtype).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
