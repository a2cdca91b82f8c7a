"""A streaming ``multipart/related`` reader (RFC 2387), as WADO-RS answers: each part written to its own file.

``MultipartFiles`` is a ``BodySink`` for ``HttpClient.stream``: the body never sits in memory (a rolling buffer of
one delimiter's length is kept between chunks), each part's content lands in ``<folder>/part-<n>``, and its headers
(``Content-Type``, ``Content-Location``) are kept. The delimiter is the first line of the body (``--<boundary>``),
which ``finish`` checks against the ``boundary`` of the response's ``Content-Type``; a body that does not end
with the close delimiter (``--<boundary>--``) is truncated, and ``finish`` says so. A restarted or resumed transfer
starts the parts over: multipart bodies carry no validator to resume against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.core.errors import DataError

MAX_HEADER_BYTES = 16 << 10
"""A part's headers longer than this are not a DICOMweb response."""


def boundary_of(content_type: str | None) -> str | None:
    """The ``boundary`` parameter of a ``multipart/related`` Content-Type (quoted or not)."""
    if not content_type or not content_type.lower().startswith("multipart/"):
        return None
    match = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', content_type, re.IGNORECASE)
    if not match:
        return None
    return match.group(2) or match.group(1)


@dataclass
class Part:
    """One received part: its headers (lower-case names) and where its content is."""

    headers: dict[str, str]
    path: Path
    size: int = 0


@dataclass
class MultipartFiles:
    """A ``BodySink`` splitting a multipart body into files under ``folder``."""

    folder: Path
    what: str
    parts: list[Part] = field(default_factory=list)
    _delimiter: bytes | None = None
    _buffer: bytes = b""
    _state: str = "preamble"  # preamble -> headers -> content -> (headers | done)
    _fh: Any = None
    _closed: bool = False

    # -- BodySink ---------------------------------------------------------------------------------------------
    def restart(self) -> None:
        self.pause()
        for part in self.parts:
            part.path.unlink(missing_ok=True)
        self.parts = []
        self._delimiter, self._buffer, self._state, self._closed = None, b"", "preamble", False
        self.folder.mkdir(parents=True, exist_ok=True)

    def rewind(self) -> int:
        # nothing to resume against (no validator): the client starts the body over
        self.restart()
        return 0

    def pause(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def write(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    # -- parsing ----------------------------------------------------------------------------------------------
    def _step(self) -> bool:
        """Consume what the buffer allows; True when another step may make progress."""
        if self._state == "preamble":
            return self._read_delimiter()
        if self._state == "headers":
            return self._read_headers()
        if self._state == "content":
            return self._read_content()
        self._buffer = b""  # the epilogue after the close delimiter is ignored, as RFC 2046 says
        return False

    def _read_delimiter(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise DataError(f"{self.what}: the response is not multipart (no delimiter line)")
            return False
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        if line.startswith(b"--") and len(line) > 2:
            self._delimiter = line.rstrip(b" \t")
            self._state = "headers"
        return True  # a preamble line before the first delimiter is skipped

    def _read_headers(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise DataError(f"{self.what}: a part's headers are longer than {MAX_HEADER_BYTES} bytes")
            return False
        headers: dict[str, str] = {}
        for line in self._buffer[:end].decode("latin-1").split("\r\n"):
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        self._buffer = self._buffer[end + 4 :]
        part = Part(headers, self.folder / f"part-{len(self.parts) + 1:05d}")
        self.parts.append(part)
        self._fh = open(part.path, "wb")  # noqa: SIM115 - closed when the part ends or by pause()
        self._state = "content"
        return True

    def _read_content(self) -> bool:
        assert self._delimiter is not None
        marker = b"\r\n" + self._delimiter
        at = self._buffer.find(marker)
        if at < 0:
            keep = len(marker) - 1  # a delimiter may be split between chunks
            if len(self._buffer) > keep:
                self._emit(self._buffer[:-keep])
                self._buffer = self._buffer[-keep:]
            return False
        after = self._buffer[at + len(marker) :]
        if len(after) < 2:
            return False  # is it "--" (the close delimiter) or CRLF (another part)? wait for the next bytes
        self._emit(self._buffer[:at])
        self._fh.close()
        self._fh = None
        if after.startswith(b"--"):
            self._state, self._closed, self._buffer = "done", True, b""
            return False
        line_end = after.find(b"\r\n")
        if line_end < 0:
            self._buffer = self._buffer[at:]  # padding after the delimiter: wait for its line end
            self._reopen_last()
            return False
        self._buffer = after[line_end + 2 :]
        self._state = "headers"
        return True

    def _reopen_last(self) -> None:
        self._fh = open(self.parts[-1].path, "ab")  # noqa: SIM115 - closed when the part ends or by pause()

    def _emit(self, data: bytes) -> None:
        if data:
            if self._fh is None:
                self._reopen_last()
            self._fh.write(data)
            self.parts[-1].size += len(data)

    # -- the end ----------------------------------------------------------------------------------------------
    def finish(self, content_type: str | None) -> list[Part]:
        """The parts, after checking the body was complete and its delimiter is the response's boundary."""
        self.pause()
        boundary = boundary_of(content_type)
        if boundary is None:
            raise DataError(f"{self.what}: Content-Type {content_type!r} is not multipart/related with a boundary")
        if self._delimiter != b"--" + boundary.encode("latin-1"):
            raise DataError(f"{self.what}: the body's delimiter does not match the boundary {boundary!r}")
        if not self._closed:
            raise DataError(f"{self.what}: the multipart body ended before its close delimiter (truncated)")
        return self.parts
