"""Reading CSV files as people write them: any encoding we can guess, any of three delimiters."""
from __future__ import annotations

import codecs
import collections
import csv
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ImportFailed

DELIMITERS = (",", ";", "\t")
SNIFF_BYTES = 64 * 1024


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
    encoding: str
    delimiter: str
    size: int
    warnings: list[str] = field(default_factory=list)


def inspect_file(path: Path) -> CsvSource:
    """Check the file can be read as CSV; guess its encoding and delimiter."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            encoding = "utf-8-sig" if _is_utf8(head, handle) else _eight_bit(path)
    except FileNotFoundError:
        raise ImportFailed(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFailed(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in head:
        raise ImportFailed(f"{path}: not a CSV file (binary data)")
    source = CsvSource(path, encoding, _delimiter(head.decode(encoding, errors="replace")), size)
    if encoding != "utf-8-sig":
        label = "Latin-1 (Windows-1252)" if encoding == "cp1252" else "Latin-1"
        source.warnings.append(f"{path}: not UTF-8; read as {label} (check accented names)")
    return source


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


def _eight_bit(path: Path) -> str:
    # Excel on Windows writes cp1252 (curly quotes, the euro sign in 0x80-0x9f);
    # true Latin-1 has only control characters there, which cp1252 cannot decode.
    try:
        with open(path, encoding="cp1252") as handle:
            for _ in iter(lambda: handle.read(1 << 20), ""):
                pass
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def _delimiter(text: str) -> str:
    # The header line decides: it has no quoted commas in practice, and
    # csv.Sniffer guesses wrong on short or uniform files.
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


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
    with open(source.path, "rb") as raw:
        text = io.TextIOWrapper(io.BufferedReader(CountingReader(raw, on_read), 1 << 16),
                                encoding=source.encoding, newline="")
        reader = csv.reader(text, delimiter=source.delimiter)
        last = 0
        try:
            for cells in reader:
                start, last = last + 1, reader.line_num
                if cells and any(c.strip() for c in cells):
                    yield start, cells
        except csv.Error as exc:
            raise ImportFailed(f"{source.path}:{reader.line_num}: malformed CSV: {exc}") from None


def check_structure(source: CsvSource) -> None:
    """Read the whole file as CSV once, at C speed (~0.3 s a million rows), keeping nothing.

    An import writes in batches, each committed: a malformed record on the millionth
    line must stop it before the first batch, not after, so the file is checked first.
    """
    with open(source.path, encoding=source.encoding, newline="") as text:
        reader = csv.reader(text, delimiter=source.delimiter)
        try:
            collections.deque(reader, maxlen=0)
        except csv.Error as exc:
            raise ImportFailed(f"{source.path}:{reader.line_num}: malformed CSV: {exc}") from None
        except OSError as exc:
            raise ImportFailed(f"{source.path}: cannot read: {exc.strerror or exc}") from None
