"""Plain-text tables, as kubectl prints them."""

from collections.abc import Sequence
from typing import TextIO


def print_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
