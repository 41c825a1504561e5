"""Framing: splitting a socket's byte stream into request lines of bounded length.

Lines longer than the limit are discarded as they stream in, so memory stays bounded."""

from __future__ import annotations

import asyncio

_CHUNK = 64 * 1024


class TooLarge:
    """Marker: a line longer than the limit was read and thrown away."""


TOO_LARGE_LINE = TooLarge()


class LineReader:
    """Splits a byte stream into lines of at most `max_line` bytes. Longer lines are
    dropped while they stream in (never held whole) and reported as TOO_LARGE_LINE."""

    def __init__(self, reader: asyncio.StreamReader, max_line: int) -> None:
        self._reader = reader
        self._max = max_line
        self._buf = bytearray()
        self._discarding = False

    async def next(self) -> bytes | TooLarge | None:
        """The next line (newline stripped), TOO_LARGE_LINE, or None at end of input."""
        while True:
            line = self._take_line()
            if line is not None:
                return line
            chunk = await self._reader.read(_CHUNK)
            if not chunk:
                return None  # an unterminated last line is dropped: nobody waits for it
            self._buf += chunk

    def _take_line(self) -> bytes | TooLarge | None:
        end = self._buf.find(b"\n")
        if end < 0:
            if self._discarding or len(self._buf) > self._max:
                self._discarding = True
                self._buf.clear()
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        if self._discarding or len(line) > self._max:
            self._discarding = False
            return TOO_LARGE_LINE
        return line
