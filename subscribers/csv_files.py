"""Reading CSV files as people write them: UTF-8 or not, row by row, any of three delimiters.

A file that is UTF-8 throughout (the common case) is decoded by Python's own
text layer, at C speed. A file that is not is decoded a line at a time: each
line as UTF-8 if it is, else as Windows-1252 (what Excel on Western Windows
writes), else as Latin-1. A file joined from two sources, one UTF-8 row in
cp1252 among thousands, is then read right everywhere, instead of every
accented name turning into mojibake ("ZoÃ«") by the file's worst row; the
lines read as Windows-1252 are named, so they can be checked.
"""
from __future__ import annotations

import codecs
import collections
import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ImportFailed

DELIMITERS = (",", ";", "\t")
SNIFF_BYTES = 64 * 1024
UTF8 = "utf-8-sig"
BY_LINE = "by line"  # not UTF-8 throughout: each line decoded on its own
NAMED_LINES = 10  # lines read as Windows-1252 that a summary names; the rest are counted


class CountingReader(io.RawIOBase):
    """A binary file that reports how far it has been read (for the progress bar)."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None] | None):
        self.raw, self.on_read, self.done = raw, on_read, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.done += n or 0
        if self.on_read is not None:
            self.on_read(self.done)
        return n or 0


@dataclass
class CsvSource:
    path: Path
    encoding: str  # UTF8 or BY_LINE
    delimiter: str
    size: int
    warnings: list[str] = field(default_factory=list)
    recoded: list[int] = field(default_factory=list)  # the first NAMED_LINES lines that were not UTF-8
    recoded_count: int = 0

    def recoded_note(self) -> str:
        """'2 rows were not UTF-8 …: lines 4, 17', for the summary; empty when every line was UTF-8."""
        if not self.recoded_count:
            return ""
        lines = ", ".join(map(str, self.recoded))
        more = f" and {self.recoded_count - len(self.recoded)} more" if self.recoded_count > len(self.recoded) else ""
        rows = "1 row was" if self.recoded_count == 1 else f"{self.recoded_count} rows were"
        return (f"{rows} not UTF-8 and read as Windows-1252 (Latin-1): line{'s' if self.recoded_count > 1 else ''} "
                f"{lines}{more}; check their accented names")


def inspect_file(path: Path) -> CsvSource:
    """Check the file can be read as CSV; see whether it is UTF-8 throughout; guess its delimiter."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            encoding = UTF8 if _is_utf8(head, handle) else BY_LINE
    except FileNotFoundError:
        raise ImportFailed(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFailed(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in head:
        raise ImportFailed(f"{path}: not a CSV file (binary data)")
    return CsvSource(path, encoding, _delimiter(head.decode("utf-8", errors="replace")), size)


def _is_utf8(head: bytes, rest: IO[bytes]) -> bool:
    # Decode the whole file once, in chunks, at C speed: a Latin-1 byte can
    # sit on the millionth line, and guessing from the head alone would fail there.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head)
        for chunk in iter(lambda: rest.read(1 << 20), b""):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _eight_bit(line: bytes) -> str:
    # Excel on Windows writes cp1252 (curly quotes, the euro sign in 0x80-0x9f); true
    # Latin-1 has only control characters there, five of which cp1252 cannot decode.
    try:
        return line.decode("cp1252")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _lines(raw: IO[bytes], source: CsvSource, note: bool) -> Iterator[str]:
    """Each physical line decoded on its own (BY_LINE); `note` records the ones that were not UTF-8."""
    for number, line in enumerate(raw, 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = _eight_bit(line)
            if note:
                source.recoded_count += 1
                if len(source.recoded) < NAMED_LINES:
                    source.recoded.append(number)
        yield text.removeprefix("\ufeff") if number == 1 else text


@contextmanager
def _text(source: CsvSource, on_read: Callable[[int], None] | None = None, note: bool = False) -> Iterator[Any]:
    """The file as text lines for csv.reader, decoded as its encoding says."""
    with open(source.path, "rb") as raw:
        buffered = io.BufferedReader(CountingReader(raw, on_read), 1 << 16)
        if source.encoding == UTF8:
            yield io.TextIOWrapper(buffered, encoding=UTF8, newline="")
        else:
            yield _lines(buffered, source, note)


def _delimiter(text: str) -> str:
    # The header line decides: it has no quoted commas in practice, and
    # csv.Sniffer guesses wrong on short or uniform files.
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


# OWASP "CSV Injection": a cell starting with = + - or @ is run as a formula by spreadsheets
# (=HYPERLINK(...) from a sign-up form's name field, say). Files we write prefix such a cell with
# a quote, which spreadsheets show as text; an import takes it off again, so an export imported
# again gives back exactly what was exported. A value that itself starts with quotes before such
# a character gets one quote more, so taking one off is always the exact inverse.
# A tab or a carriage return first is a formula too, in some spreadsheets (OWASP's list).
_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_RISKY = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(value: str) -> str:
    """A cell as it is safe to open in a spreadsheet."""
    return "'" + value if value.startswith(_RISKY) and _FORMULA.match(value) else value


def restore(value: str) -> str:
    """The inverse of neutralise: the value as it was before it was written."""
    return value[1:] if value.startswith("'") and _FORMULA.match(value, 1) else value


def safe_row(cells: Iterable[Any]) -> list[Any]:
    return [neutralise(c) if isinstance(c, str) else c for c in cells]


@contextmanager
def atomic_writer(path: Path) -> Iterator[IO[str]]:
    """A text file that appears complete at `path`, or not at all (the old one stays)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rows(source: CsvSource, on_read: Callable[[int], None] | None = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) for every non-blank record, the header first."""
    with _text(source, on_read, note=True) as text:
        reader = csv.reader(text, delimiter=source.delimiter)
        last = 0
        try:
            for cells in reader:
                start, last = last + 1, reader.line_num
                if cells and (cells[0].strip() or any(c.strip() for c in cells)):
                    yield start, cells
        except csv.Error as exc:
            raise ImportFailed(f"{source.path}:{reader.line_num}: malformed CSV: {exc}") from None


def check_structure(source: CsvSource) -> None:
    """Read the whole file as CSV once, at C speed (~0.3 s a million rows), keeping nothing.

    An import writes in batches, each committed: a malformed record on the millionth
    line must stop it before the first batch, not after, so the file is checked first.
    """
    try:
        with _text(source) as text:
            reader = csv.reader(text, delimiter=source.delimiter)
            try:
                collections.deque(reader, maxlen=0)
            except csv.Error as exc:
                raise ImportFailed(f"{source.path}:{reader.line_num}: malformed CSV: {exc}") from None
    except OSError as exc:
        raise ImportFailed(f"{source.path}: cannot read: {exc.strerror or exc}") from None
