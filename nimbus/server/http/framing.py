"""Where does the next HTTP/1.1 request in a read-ahead buffer end? Strict, incremental, capped.

The connection layer (nimbus.server.http.gate) reads each request completely (head and body)
before a worker thread is committed to it, and the worker's cheroot then reads exactly those
bytes and no more (conn.Connection.take_request). This module decides where a request ends,
and it only accepts framing that cheroot reads the same way: a head of CRLF-terminated lines,
a request line `METHOD SP target SP HTTP/1.0|1.1`, header names that are RFC 9110 tokens right
before their colon, at most one Content-Length (digits), and Transfer-Encoding only as one
`chunked` on HTTP/1.1 with CRLF chunk lines and no trailers. Everything else -- obs-fold
continuation lines, bare LF or CR, whitespace before a colon, odd bytes in a name, both
Content-Length and Transfer-Encoding -- is refused with the status the client is owed: 400,
431 (head over 16 KiB), 413 (body over 1 MiB, counted as cheroot counts it), 501 (another
transfer coding), 505 (another HTTP version). See docs/decisions.md ("The connection layer").
"""

from __future__ import annotations

import re

from nimbus import wire

HEAD_LIMIT = 16 * 1024
BODY_LIMIT = wire.MAX_BODY
_CHUNK_LINE_LIMIT = 1024
_MAX_CHUNKS = 16384  # bounds the framing bytes a chunked body may add to its 1 MiB

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# The whole head in one C-level match: the request line, then `name:value` lines.
_REQUEST_LINE_RE = _TOKEN + rb" [^\x00-\x20\x7f]+ HTTP/1\.[01]\r\n"
_HEAD = re.compile(_REQUEST_LINE_RE + rb"(?:" + _TOKEN + rb":[^\r\n\x00]*\r\n)*\r\n")
_REQUEST_LINE = re.compile(_REQUEST_LINE_RE)
_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|expect):([^\r\n]*)", re.I)
_BARE_LF = re.compile(rb"(?<!\r)\n")
_VERSION = re.compile(rb"[^\r\n]* HTTP/[0-9]\.[0-9]\r\n")
_HEX = re.compile(rb"[0-9a-fA-F]{1,8}")


class FrameError(Exception):
    """The request can never be accepted; answer `status` with `message` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestScanner:
    """Scans one request, starting at `start` in a buffer that only grows; feed() the whole
    buffer each time. The scan resumes where it stopped: a client trickling one byte at a
    time costs O(bytes) overall, and a pipeline of requests is scanned once, not re-copied."""

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.head_end = 0          # index just past the blank line, once the head is complete
        self.expect_continue = False
        self._searched = start     # how far the head search got
        self._length = 0           # Content-Length (0 without one)
        self._chunked = False
        self._pos = 0              # chunked: start of the next chunk-size line
        self._body_bytes = 0       # chunk data plus size lines: what cheroot counts
        self._chunks = 0
        self._error: FrameError | None = None

    def feed(self, buf: bytes | bytearray) -> int | None:
        """The index just past the request, or None while it is incomplete; raises FrameError."""
        if self._error is not None:
            raise self._error
        try:
            if not self.head_end and not self._scan_head(buf):
                return None
            if self._chunked:
                return self._scan_chunks(buf)
            end = self.head_end + self._length
            return end if len(buf) >= end else None
        except FrameError as exc:
            self._error = exc
            raise

    def _scan_head(self, buf: bytes | bytearray) -> bool:
        # One CRLF before the request line is tolerated (RFC 9112 2.2), as cheroot does.
        first = self.start + 2 if buf[self.start:self.start + 2] == b"\r\n" else self.start
        resume = max(first, self._searched - 3)
        end = buf.find(b"\r\n\r\n", resume)
        if end < 0:
            if _BARE_LF.search(buf, max(resume, self.start + 1) - 1):
                raise FrameError(400, "HTTP requires CRLF line endings")
            if len(buf) - first > HEAD_LIMIT:
                raise FrameError(431, "request head is larger than 16 KiB")
            self._searched = len(buf)
            return False
        self.head_end = end + 4
        if self.head_end - first > HEAD_LIMIT:
            raise FrameError(431, "request head is larger than 16 KiB")
        if not _HEAD.fullmatch(buf, first, self.head_end):
            raise _head_error(bytes(buf[first:self.head_end]))
        self._read_framing(buf, first)
        return True

    def _read_framing(self, buf: bytes | bytearray, first: int) -> None:
        lengths, codings = [], []
        for name, value in _FRAMING.findall(buf, first, self.head_end):
            name, value = name.lower(), value.strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.append(value.lower())
            elif value.lower() == b"100-continue":
                self.expect_continue = True
        http10 = buf[first:buf.find(b"\r\n", first)].endswith(b" HTTP/1.0")
        if lengths and codings:
            raise FrameError(400, "a request cannot have both Content-Length and "
                                  "Transfer-Encoding")
        if len(lengths) > 1:
            raise FrameError(400, "more than one Content-Length header")
        if codings:
            self._transfer_coding(codings, http10)
        elif lengths:
            if not lengths[0].isdigit() or len(lengths[0]) > 18:
                raise FrameError(400, "invalid Content-Length")
            self._length = int(lengths[0])
            if self._length > BODY_LIMIT:
                raise FrameError(413, "request body is larger than 1 MiB")
        self.expect_continue = self.expect_continue and not http10

    def _transfer_coding(self, codings: list[bytes], http10: bool) -> None:
        if http10:  # cheroot ignores Transfer-Encoding on HTTP/1.0 and would read no body
            raise FrameError(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
        if codings != [b"chunked"]:
            if len(codings) == 1 and b"," not in codings[0] and codings[0] != b"chunked":
                raise FrameError(501, "only the chunked transfer coding is supported")
            raise FrameError(400, "Transfer-Encoding must be one header: chunked")
        self._chunked = True
        self._pos = self.head_end

    def _scan_chunks(self, buf: bytes | bytearray) -> int | None:
        while True:
            eol = buf.find(b"\n", self._pos)
            if eol < 0:
                if len(buf) - self._pos > _CHUNK_LINE_LIMIT:
                    raise FrameError(400, "invalid chunked body")
                return None
            if eol == self._pos or buf[eol - 1] != 0x0D:
                raise FrameError(400, "invalid chunked body (lines end with CRLF)")
            line = bytes(buf[self._pos:eol - 1])
            size_text = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size_text):
                raise FrameError(400, "invalid chunked body")
            size = int(size_text, 16)
            counted = self._body_bytes + len(line) + 2 + size  # cheroot counts the lines too
            if counted > BODY_LIMIT:
                raise FrameError(413, "request body is larger than 1 MiB")
            if self._chunks >= _MAX_CHUNKS:
                raise FrameError(400, "too many chunks in the request body")
            if size == 0:
                return self._last_chunk(buf, eol + 1)
            data_end = eol + 1 + size
            if len(buf) < data_end + 2:
                return None  # this chunk is counted once its data has arrived
            if buf[data_end:data_end + 2] != b"\r\n":
                raise FrameError(400, "invalid chunked body")
            self._body_bytes = counted
            self._chunks += 1
            self._pos = data_end + 2

    def _last_chunk(self, buf: bytes | bytearray, after: int) -> int | None:
        # cheroot stops at the last chunk and never reads trailers: refuse them, so that
        # both agree where the request ends.
        if len(buf) < after + 2:
            if len(buf) > after and buf[after] != 0x0D:
                raise FrameError(400, "chunked trailers are not accepted")
            return None
        if buf[after:after + 2] != b"\r\n":
            raise FrameError(400, "chunked trailers are not accepted")
        return after + 2


def _head_error(head: bytes) -> FrameError:
    """Why a complete head failed the strict match (the slow path: for the message only)."""
    line_end = head.find(b"\r\n")
    if _BARE_LF.search(head) or b"\r" in head.replace(b"\r\n", b""):
        return FrameError(400, "HTTP requires CRLF line endings")
    request_line = head[:line_end + 2]
    if not _REQUEST_LINE.fullmatch(request_line):
        if _VERSION.fullmatch(request_line) and not request_line.endswith(
                (b" HTTP/1.0\r\n", b" HTTP/1.1\r\n")):
            return FrameError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        return FrameError(400, "malformed request line")
    for line in head[line_end + 2:-4].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            return FrameError(400, "folded header lines (obs-fold) are not accepted")
        name, colon, _ = line.partition(b":")
        if not colon:
            return FrameError(400, "header line without a colon")
        if name.rstrip(b" \t") != name or name.lstrip(b" \t") != name:
            return FrameError(400, "whitespace around a header name is not accepted")
        if not re.fullmatch(_TOKEN, name):
            return FrameError(400, "invalid character in a header name")
    return FrameError(400, "invalid character in a header value")
