"""What a page or buffer must hold: a pattern derived from its identity and version.

Version 0 means never written (or freed): all zeros, as a hole reads.  Any other
version fills the unit with 16-byte records ``(ident, version ^ record index)``,
so a wrong frame, a stale version, a zeroed page or a misplaced record all show.
"""

from __future__ import annotations

import struct

_REC = struct.Struct("<QQ")
_cache: dict[tuple[int, int, int], bytes] = {}


def expected(ident: int, version: int, size: int) -> bytes:
    """The ``size`` bytes that unit ``ident`` holds at ``version``."""
    if version == 0:
        return bytes(size)
    key = (ident, version, size)
    b = _cache.get(key)
    if b is None:
        tag = (ident << 20) ^ version
        b = b"".join(_REC.pack(ident, tag ^ i) for i in range(size // _REC.size))
        if len(_cache) > 4096:
            _cache.clear()
        _cache[key] = b
    return b


def describe(data: bytes, size: int) -> str:
    """A short guess of what a mismatching unit holds (for the failure message)."""
    if data == bytes(len(data)):
        return "zeros"
    if len(data) >= _REC.size:
        ident, tag = _REC.unpack_from(data, 0)
        return f"unit {ident} version {(tag ^ (ident << 20)) & ((1 << 20) - 1)}"
    return repr(data[:16])
