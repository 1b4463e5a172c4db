"""Plain-text tables, as kubectl prints them."""

from collections.abc import Sequence
from typing import TextIO

from handoff.review.untrusted import inline


def print_table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks.

    Cells may hold what an agent or a reviewer wrote (an action, a reviewer's name), so each is
    shown on one line with its controls escaped: no cell can print a row of its own."""
    shown = [[inline(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in shown) for i in range(len(shown[0]))]
    for row in shown:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
