"""Reading annotation files (manifests, CSVs, class lists, COCO JSON) as UTF-8 text.

A file in another encoding (Latin-1 from an old tool, UTF-16 from a spreadsheet) fails naming
the file and the line of the first byte that does not decode, instead of a bare
``UnicodeDecodeError`` from deep inside a parser.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path


def read_text(
    path: str | PathLike, error: type[Exception] = ValueError, encoding: str = "utf-8"
) -> str:
    """The text of ``path``; ``error(message)`` if it is not valid ``encoding``.

    ``encoding="utf-8-sig"`` also drops a leading byte-order mark (spreadsheet exports)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}: "
            f"{err.reason}); convert the file to UTF-8"
        ) from err
