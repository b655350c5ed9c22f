"""The known pairs read as text: a chunk of packed keys in hex at a time, read ahead.

A million known pairs read as rows cost a tuple and two ints each before a key
exists; SQLite can write the keys as text instead, without holding the GIL, and one
``int(x, 16)`` per pair makes them (:func:`syncd.core.pairs.from_hex`).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Generator, Iterator
from typing import Protocol

from syncd.core.pairs import unpack
from syncd.state.errors import StateError


class _Texts(Protocol):
    def known_texts(self, relation: str) -> Generator[str, None, None]: ...


_TEXT_CHUNK = 20_000
_KNOWN_CHUNK = (
    "SELECT group_concat(printf('%x%016x', src, dst)), count(*) FROM"
    " (SELECT src, dst FROM pairs WHERE rel = ?1 AND (src, dst) > (?2, ?3)"
    " ORDER BY src, dst LIMIT ?4)"
)


def known_texts(db: sqlite3.Connection, relation: str) -> Iterator[str]:
    """Chunks of packed keys in hex, comma-joined, in key order; each chunk goes on after
    the last one's last pair. The row count is checked against the chunks at the end: a
    chunk that came back in another order than asked would have skipped pairs."""
    row = db.execute("SELECT id FROM relations WHERE name = ?", (relation,)).fetchone()
    if row is None:
        return
    rel = int(row[0])
    last, seen = (-1, -1), 0
    while True:
        text, n = db.execute(_KNOWN_CHUNK, (rel, *last, _TEXT_CHUNK)).fetchone()
        if not n:
            break
        seen += n
        last = unpack(int(text.rpartition(",")[2], 16))
        yield text
    total = db.execute("SELECT count(*) FROM pairs WHERE rel = ?", (rel,)).fetchone()[0]
    if seen != total:
        raise StateError(f"known pairs read as {seen} of {total}: the state read is not usable")


_END = object()


class KnownAhead:
    """The known pairs read ahead by a thread of its own, a few chunks at a time.

    SQLite builds each chunk's text without the GIL, so the reading overlaps whatever
    the interpreter does meanwhile (the source read, then the matching of the chunks
    before). The queue is short: read-ahead costs little memory. :meth:`close` ends
    the thread whether or not the chunks were taken.
    """

    def __init__(self, store: _Texts, relation: str, ahead: int = 8) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(store, relation), name="syncd-known-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, store: _Texts, relation: str) -> None:
        try:
            with contextlib.closing(store.known_texts(relation)) as texts:
                for text in texts:
                    if not self._put(text):
                        return
        except BaseException as exc:  # handed to the reader, who raises it
            self._put(exc)
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def chunks(self) -> Iterator[str]:
        """The chunks, as ``StateStore.known_texts`` gives them (blocks: a worker thread)."""
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, str)
            yield item

    def close(self) -> None:
        self._stop.set()
