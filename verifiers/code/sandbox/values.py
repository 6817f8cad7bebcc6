"""Plain data across process boundaries: tagged JSON and length-prefixed frames.

Place: shared by the candidate process (``candidate.py``, which encodes return values), the test
process (``testside.py``, which decodes them and encodes call arguments) and the trusted parent
(:mod:`verifiers.code.compare`). Standard library only.

*Plain data* is ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes`` and
``list`` / ``tuple`` / ``dict`` / ``set`` / ``frozenset`` of those: exact types, no subclasses.
:func:`encode` turns such a value into JSON-ready tagged form without calling any method a
program could override (type checks are ``type(v) is X``); :func:`decode` rebuilds exact builtin
values from it and refuses anything else. Both bound depth and item count, so a recursive
structure, a generator, an object with a hostile ``__reduce__`` or a billion-element list is
refused, never followed.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000


class NotPlainData(ValueError):
    """The value is not plain data, or exceeds the depth / size limits."""


def encode(value: object, max_items: int = MAX_ITEMS) -> object:
    """Tagged JSON-ready form of a plain value (exact builtin types only)."""
    budget = [max_items]

    def enc(v: object, depth: int) -> object:
        budget[0] -= 1
        if depth > MAX_DEPTH:
            raise NotPlainData("value nested deeper than %d levels (or recursive)" % MAX_DEPTH)
        if budget[0] < 0:
            raise NotPlainData("value has more than %d items" % max_items)
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return v if -(1 << 53) < v < (1 << 53) else {"I": hex(v)}
        if t is float:
            return v if math.isfinite(v) else {"f": repr(v)}
        if t is list:
            return [enc(x, depth + 1) for x in v]
        if t is tuple:
            return {"t": [enc(x, depth + 1) for x in v]}
        if t is set or t is frozenset:
            return {"s" if t is set else "F": [enc(x, depth + 1) for x in v]}
        if t is dict:
            return {"d": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
        if t is bytes:
            return {"b": v.hex()}
        if t is complex:
            return {"c": [enc(v.real, depth + 1), enc(v.imag, depth + 1)]}
        raise NotPlainData(f"type {t.__name__} is not plain data")

    return enc(value, 0)


def decode(obj: object, max_items: int = MAX_ITEMS) -> object:
    """Tagged JSON (as parsed by ``json.loads``) -> a plain builtin value; NotPlainData otherwise."""
    budget = [max_items]

    def dec(o: object, depth: int) -> object:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise NotPlainData("value too deep or too large")
        t = type(o)
        if o is None or t is bool or t is int or t is float or t is str:
            return o
        if t is list:
            return [dec(x, depth + 1) for x in o]
        if t is not dict or len(o) != 1:
            raise NotPlainData(f"not a tagged value: {str(o)[:80]}")
        (tag, body), = o.items()
        try:
            if tag == "I":
                return int(body, 16)
            if tag == "f":
                value = float(body)
                if math.isfinite(value):
                    raise NotPlainData("finite float sent as a tagged string")
                return value
            if tag == "b":
                return bytes.fromhex(body)
            if type(body) is not list:
                raise NotPlainData(f"bad {tag!r} body")
            items = [dec(x, depth + 1) for x in body]
            if tag == "t":
                return tuple(items)
            if tag == "s":
                return set(items)
            if tag == "F":
                return frozenset(items)
            if tag == "d":
                if not all(type(p) is list and len(p) == 2 for p in items):
                    raise NotPlainData("bad dict item")
                return {k: v for k, v in items}
            if tag == "c" and len(items) == 2 and all(type(x) in (int, float) for x in items):
                return complex(*items)
        except (TypeError, ValueError, OverflowError) as err:
            if isinstance(err, NotPlainData):
                raise
            raise NotPlainData(f"bad {tag!r} value: {err}") from err
        raise NotPlainData(f"unknown tag {tag!r}")

    return dec(obj, 0)


def loads(data: bytes) -> object:
    """``json.loads`` that turns every parse failure (including deep nesting) into NotPlainData."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError, MemoryError) as err:
        raise NotPlainData(f"unreadable frame: {type(err).__name__}") from err


# --------------------------------------------------------------------------- frames

class ChannelClosed(EOFError):
    """The other end closed the channel (its process ended) or sent a malformed frame."""


class ChannelTimeout(TimeoutError):
    pass


def write_frame(fd: int, obj: object, deadline: float | None = None, max_bytes: int | None = None) -> None:
    """One length-prefixed JSON frame; waits for room in the pipe until ``deadline`` (monotonic).

    A frame over ``max_bytes`` is refused with NotPlainData before anything is written.
    """
    data = json.dumps(obj, allow_nan=False).encode()
    if max_bytes is not None and len(data) > max_bytes:
        raise NotPlainData(f"value of {len(data)} bytes is over the {max_bytes}-byte limit")
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise ChannelTimeout("the other side stopped reading")
        try:
            view = view[os.write(fd, view[: 1 << 16]):]
        except BrokenPipeError as err:
            raise ChannelClosed("the other side is gone") from err
        except BlockingIOError:
            continue


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ChannelTimeout("no answer in time")
        try:
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise ChannelClosed("the other side is gone")
        buf += chunk
    return bytes(buf)


def read_frame(fd: int, max_bytes: int, deadline: float | None = None) -> bytes:
    """The body of one frame (not parsed); a frame over ``max_bytes`` is a protocol violation."""
    size = struct.unpack(">I", _read_exact(fd, 4, deadline))[0]
    if size > max_bytes:
        raise NotPlainData(f"a frame of {size} bytes is over the {max_bytes}-byte limit")
    return _read_exact(fd, size, deadline)
