"""Where does the next HTTP/1.1 request in a read-ahead buffer end? Incremental, size-capped.

The connection layer (nimbus.server.http.gate) reads each request completely (head and body)
before a worker thread is committed to it; this module decides when "completely" is, and
refuses, with the status the HTTP layer owes the client, what can never become a request we
accept: a head over 16 KiB (431), a body over 1 MiB (413), unparseable framing (400).
It only frames; cheroot parses the request afterwards, so anything it would refuse itself
(a lowercase method, HTTP/2.0, a header line without a colon) is handed over to it as soon as
the head is complete.
"""

from __future__ import annotations

from nimbus import wire

HEAD_LIMIT = 16 * 1024
BODY_LIMIT = wire.MAX_BODY
_CHUNK_LINE_LIMIT = 1024
_MAX_CHUNKS = 16384  # bounds the framing bytes a chunked body may add to its 1 MiB


class FrameError(Exception):
    """The request can never be accepted; answer `status` with `message` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestScanner:
    """Scans one request as its bytes arrive; feed() the whole buffer each time.

    The buffer only grows between calls (the connection appends what it reads), so the scan
    resumes where it stopped: a client trickling one byte at a time costs O(bytes) overall.
    """

    def __init__(self) -> None:
        self.head_end = 0          # index just past the blank line, once the head is complete
        self.expect_continue = False
        self._searched = 0         # how far the head search got
        self._length: int | None = None  # Content-Length, when the body has one
        self._chunked = False
        self._pos = 0              # chunked: start of the next chunk-size line
        self._body_bytes = 0
        self._chunks = 0
        self._trailers = False
        self._trailer_start = 0
        self._error: FrameError | None = None

    def feed(self, buf: bytes) -> int | None:
        """The index just past the request, or None while it is incomplete; raises FrameError."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(buf)
        except FrameError as exc:
            self._error = exc
            raise

    def _feed(self, buf: bytes) -> int | None:
        if not self.head_end and not self._scan_head(buf):
            return None
        if self._chunked:
            return self._scan_chunks(buf)
        end = self.head_end + (self._length or 0)
        return end if len(buf) >= end else None

    def _scan_head(self, buf: bytes) -> bool:
        # One CRLF before the request line is tolerated (RFC 9112 2.2), as cheroot does.
        skip = 2 if buf.startswith(b"\r\n") else 0
        start = max(skip, self._searched - 3)
        ends = [i + n for i, n in ((buf.find(b"\r\n\r\n", start), 4),
                                   (buf.find(b"\n\n", start), 2)) if i >= 0]
        if not ends:
            if len(buf) - skip > HEAD_LIMIT:
                raise FrameError(431, "request head is larger than 16 KiB")
            self._searched = len(buf)
            return False
        self.head_end = min(ends)
        if self.head_end - skip > HEAD_LIMIT:
            raise FrameError(431, "request head is larger than 16 KiB")
        self._read_headers(buf[skip:self.head_end])
        return True

    def _read_headers(self, head: bytes) -> None:
        lengths, codings = set(), []
        for line in head.split(b"\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name[:1] in (b" ", b"\t"):
                continue  # cheroot refuses or folds these; it parses the head again anyway
            key, value = name.strip().lower(), value.strip()
            if key == b"content-length":
                lengths.add(value)
            elif key == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
            elif key == b"expect":
                self.expect_continue = value.lower() == b"100-continue"
        if lengths and codings:
            raise FrameError(400, "a request cannot have both Content-Length and "
                                  "Transfer-Encoding")
        if len(lengths) > 1:
            raise FrameError(400, "conflicting Content-Length headers")
        if lengths:
            value = lengths.pop()
            if not value.isdigit() or len(value) > 18:
                raise FrameError(400, "invalid Content-Length")
            self._length = int(value)
            if self._length > BODY_LIMIT:
                raise FrameError(413, "request body is larger than 1 MiB")
        elif codings == [b"chunked"]:
            self._chunked = True
            self._pos = self.head_end
        # Any other transfer coding: cheroot answers 501 from the head alone.

    def _scan_chunks(self, buf: bytes) -> int | None:
        while True:
            eol = buf.find(b"\n", self._pos)
            if eol < 0:
                if self._trailers and len(buf) - self._trailer_start > HEAD_LIMIT:
                    raise FrameError(431, "request trailers are larger than 16 KiB")
                if not self._trailers and len(buf) - self._pos > _CHUNK_LINE_LIMIT:
                    raise FrameError(400, "invalid chunked body")
                return None
            line = buf[self._pos:eol].rstrip(b"\r")
            if self._trailers:
                self._pos = eol + 1
                if not line:
                    return self._pos
                if self._pos - self._trailer_start > HEAD_LIMIT:
                    raise FrameError(431, "request trailers are larger than 16 KiB")
                continue
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 8 or not all(
                    c in b"0123456789abcdefABCDEF" for c in size_text):
                raise FrameError(400, "invalid chunked body")
            size = int(size_text, 16)
            if self._body_bytes + size > BODY_LIMIT:
                raise FrameError(413, "request body is larger than 1 MiB")
            if self._chunks >= _MAX_CHUNKS:
                raise FrameError(400, "too many chunks in the request body")
            if size == 0:
                self._chunks += 1
                self._trailers = True
                self._pos = self._trailer_start = eol + 1
                continue
            data_end = eol + 1 + size
            if len(buf) < data_end + 2:
                return None  # this chunk is counted once its data has arrived
            if buf[data_end:data_end + 2] != b"\r\n":
                raise FrameError(400, "invalid chunked body")
            self._body_bytes += size
            self._chunks += 1
            self._pos = data_end + 2
