"""Agent-written text as reviewers see it: shown, never able to steer a terminal or a page.

Three threats, one module for the terminal and the console:
- control characters (escape sequences, carriage returns, backspaces) would move the cursor,
  recolour or overwrite what the terminal already printed;
- bidi controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C) reorder what follows
  them, on a terminal and in a page alike: ``cod\u202egnp.exe`` reads as ``codexe.png``;
- newlines, tabs and long lines that the terminal wraps would print lines that look like the
  tool's own (``Policy ... tier 1, HOOTL``, ``bob approved``).

Each is shown as a visible escape (``\\x1b``, ``\\u202e``, ``\\n``). Multi-line text keeps its
lines only where a field may span several, and every line after the first carries ``| `` so it
reads as the agent's, never as the tool's next line. Pure: no I/O.
"""

import re
import unicodedata

BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
LINE_SEPARATORS = frozenset([0x2028, 0x2029])  # some terminals and renderers break lines there
QUOTE = "| "

_BIDI = "".join(chr(c) for c in sorted(BIDI_CONTROLS | LINE_SEPARATORS))
# C0 and C1 controls and DEL, and the bidi controls: escaped everywhere. Newline and tab are
# escaped only in text shown on one line.
_HIDDEN = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_HIDDEN_INLINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: object) -> str:
    """Every control and bidi character as a visible escape; newlines and tabs kept (for a page,
    where they cannot fake the page's own lines, and for ``block``, which quotes them)."""
    return _HIDDEN.sub(_escape, str(text).replace("\r\n", "\n"))


def visible_json(text: str) -> str:
    """JSON text with what ``json.dumps(ensure_ascii=False)`` leaves raw (DEL, C1 and bidi
    controls, line separators) as ``\\uXXXX`` escapes: it stays valid JSON of the same value."""
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def inline(text: object) -> str:
    """One line: newlines and tabs escaped too."""
    return _HIDDEN_INLINE.sub(_escape, str(text).replace("\r\n", "\n"))


def _columns(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """Columns a terminal gives ``text``: wide East Asian characters take two, combining marks
    and other zero-width characters none."""
    return sum(_columns(char) for char in text)


def _fitting(text: str, columns: int, start: int = 0) -> int:
    """How many characters of ``text`` from ``start`` fit in ``columns``."""
    used = 0
    for index in range(start, len(text)):
        used += _columns(text[index])
        if used > columns:
            return index - start
    return len(text) - start


def wrap(line: str, columns: int, rest: int | None = None) -> list[str]:
    """``line`` cut into pieces of at most ``columns`` terminal columns (``rest`` for the pieces
    after the first), at a space when there is one, so that the terminal never wraps it on its
    own (a wrapped remainder would start at the first column, where it could pass for one of
    the tool's own lines). Linear in the length: parameters can be long."""
    limit = max(columns, 8)
    pieces: list[str] = []
    start = 0
    while True:
        cut = start + _fitting(line, limit, start)
        if cut >= len(line):
            pieces.append(line[start:])
            return pieces
        cut = max(cut, start + 1)
        space = line.rfind(" ", start, cut + 1)
        if space > start:
            pieces.append(line[start:space])
            start = space + 1
        else:
            pieces.append(line[start:cut])
            start = cut
        limit = max(columns if rest is None else rest, 8)


def block(text: object, columns: int) -> list[str]:
    """Agent text for a field that may span lines: its own lines, each neutralised (tabs
    escaped), wrapped to ``columns``; every line after the first starts with ``| ``."""
    lines: list[str] = []
    for raw in visible(text).split("\n"):
        first = columns if not lines else columns - len(QUOTE)
        lines += wrap(raw.replace("\t", "\\t"), first, columns - len(QUOTE))
    return lines[:1] + [QUOTE + line for line in lines[1:]]


def line(text: object, columns: int) -> list[str]:
    """Text shown on one line (neutralised, newlines escaped), wrapped to ``columns``; the
    pieces after the first start with ``| ``."""
    pieces = wrap(inline(text), columns, columns - len(QUOTE))
    return pieces[:1] + [QUOTE + piece for piece in pieces[1:]]


def clip(text: object, columns: int) -> str:
    """One line of at most ``columns`` terminal columns, ending in ``…`` when cut."""
    shown = inline(text)
    if width(shown) <= columns:
        return shown
    return shown[: _fitting(shown, max(columns - 1, 1))] + "…"
