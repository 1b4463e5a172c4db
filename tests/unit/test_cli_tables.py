"""The CLI's plain tables show what others wrote on one line each, controls escaped."""

import io

from handoff.cli.tables import print_table


def table(rows: list[list[str]]) -> list[str]:
    out = io.StringIO()
    print_table(rows, out)
    return out.getvalue().splitlines()


def test_columns_are_padded_to_the_widest_cell() -> None:
    assert table([["NAME", "N"], ["payments-agent", "3"]]) == [
        "NAME            N",
        "payments-agent  3",
    ]


def test_a_cell_cannot_print_a_row_of_its_own() -> None:
    forged = "bob\nPOLICY  REQUESTS  REACHED A HUMAN"
    lines = table([["REVIEWER", "DECIDED"], [forged, "1"]])
    assert len(lines) == 2
    assert lines[1].startswith("bob\\nPOLICY")


def test_bidi_and_escape_sequences_are_shown_not_obeyed() -> None:
    lines = table([["ACTION"], ["refund\u202egnp.exe\x1b[2J"]])
    assert lines[1] == "refund\\u202egnp.exe\\x1b[2J"
