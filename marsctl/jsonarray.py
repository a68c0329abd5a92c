"""JSON arrays (``[{...}, ...]``) read element by element in bounded pieces, as strictly as JSONL lines are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from marsctl.errors import DataError
from marsctl.inputs import PIECE, read_exactly
from marsctl.jsonio import DECODER, MAX_DEPTH, UTF8_HINT, BadNumber, check_values, max_line_bytes, too_long

_PIECE = PIECE  # bytes read at once (tests shrink it, so that every token is cut somewhere)
_MISSING = object()


def iter_json_array(fh: BinaryIO, name: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(row number, value)`` for each element of a JSON array (``[{...}, ...]``), read in bounded pieces.

    Memory stays within :func:`max_line_bytes` per element (plus a piece): a longer element is a DataError,
    as are invalid UTF-8, a NUL byte, invalid JSON, NaN, Infinity, an over-long int, deep nesting and lone
    surrogates (checked as JSONL lines are), and anything after the closing ``]``.
    """
    reader = _ArrayReader(fh, name, max_line_bytes())
    yield from reader.elements()


class _ArrayReader:
    """The elements of a JSON array, decoded incrementally: at most one element (and one piece) is held."""

    _WS = " \t\r\n"

    def __init__(self, fh: BinaryIO, name: str, cap: int) -> None:
        import codecs

        self.fh, self.name, self.cap = fh, name, cap
        self.text = ""  # decoded, not yet parsed (from self.pos)
        self.pos = 0
        self.pending: list[str] = []  # decoded pieces after self.text, joined to it only when parsed
        self.pending_chars = 0
        self.held = 0  # UTF-8 bytes of self.text and self.pending
        self.done = 0  # bytes read before self.text
        self.line = 1  # line number at the start of self.text
        self.eof = False
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.first = True

    def _join(self) -> None:
        """Append the pending pieces to the text (once per parse, not once per piece: linear time)."""
        if self.pending:
            self.text = "".join([self.text, *self.pending])
            self.pending.clear()
            self.pending_chars = 0

    def _trim(self) -> None:
        """Drop the text already parsed, keeping the byte and line counts."""
        if self.pos:
            gone = self.text[:self.pos]
            size = len(gone.encode("utf-8", "surrogatepass"))
            self.done += size
            self.held -= size
            self.line += gone.count("\n")
            self.text, self.pos = self.text[self.pos:], 0

    def _more(self, row: int | None = None) -> bool:
        """Read one more piece; False at the end of the input. With ``row``, the text held (from the start of
        that row's element, which is not complete) must not pass the cap."""
        if self.eof:
            return False
        self._trim()
        if row is not None and self.held > self.cap:
            raise too_long(f"{self.name} row {row}", "the array element", self.cap)
        raw = read_exactly(self.fh, _PIECE, self.name)
        nul = raw.find(b"\0")
        if nul >= 0:
            msg = f"{self.name}: NUL byte at byte offset {self.done + self.held + nul} (a binary file?)"
            raise DataError(msg)
        try:
            piece = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            msg = f"{self.name}: not valid UTF-8 at byte offset {self.done + self.held + e.start}"
            raise DataError(msg, hint=UTF8_HINT) from None
        if self.first:
            piece = piece.removeprefix("\ufeff")
            self.first = False
        self.eof = not raw
        self.held += len(piece.encode("utf-8", "surrogatepass"))
        self.pending.append(piece)
        self.pending_chars += len(piece)
        return bool(raw)

    def _skip_ws(self) -> str:
        """The next character that is not white space ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in self._WS:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            more = self._more()
            self._join()
            if not more:
                return ""

    def _expect(self, allowed: str, row: int) -> str:
        char = self._skip_ws()
        if not char or char not in allowed:
            found = repr(char) if char else "the end of the file"
            want = " or ".join(repr(c) for c in allowed)
            msg = f"{self.name} row {row}: invalid JSON array (expected {want}, found {found})"
            raise DataError(msg)
        self.pos += 1
        return char

    def elements(self) -> Iterator[tuple[int, Any]]:
        self._expect("[", 1)
        row = 1
        if self._skip_ws() == "]":
            self.pos += 1
        else:
            while True:
                yield row, self._element(row)
                if self._expect(",]", row + 1) == "]":
                    break
                row += 1
        if self._skip_ws():
            msg = f"{self.name} row {row}: text after the JSON array's closing ']'"
            raise DataError(msg)

    def _element(self, row: int) -> Any:
        self._skip_ws()
        tried = 0
        while True:
            pending = len(self.text) - self.pos + self.pending_chars
            if pending >= 2 * tried or self.eof:  # parse again only when the text has doubled: linear time
                self._join()
                tried = max(pending, 1)
                value = self._decode(row)
                if value is not _MISSING:
                    return value
            self._more(row)

    def _decode(self, row: int) -> Any:
        """The element at ``pos`` (moving past it), or _MISSING when more text may complete it."""
        where = f"{self.name} row {row}"
        start = self.pos
        try:
            value, end = DECODER.raw_decode(self.text, start)
        except json.JSONDecodeError as e:
            if self.eof or (e.pos < len(self.text) - 64 and not e.msg.startswith("Unterminated string")):
                line = self.line + self.text.count("\n", 0, e.pos)
                msg = f"{where}: invalid JSON ({e.msg} at line {line})"
                raise DataError(msg) from None
            return _MISSING
        except BadNumber as e:
            raise DataError(f"{where}: {e}") from None
        except RecursionError:
            msg = f"{where}: invalid JSON (nested too deeply; rows may nest {MAX_DEPTH} levels)"
            raise DataError(msg) from None
        except ValueError as e:
            raise DataError(f"{where}: invalid JSON ({e})") from None
        if end == len(self.text) and not self.eof:
            return _MISSING  # a number or literal may go on in the next piece
        if (end - start) * 4 > self.cap and len(self.text[start:end].encode("utf-8", "surrogatepass")) > self.cap:
            raise too_long(where, "the array element", self.cap)
        if isinstance(value, dict | list):
            check_values(value, where)
        self.pos = end
        return value
