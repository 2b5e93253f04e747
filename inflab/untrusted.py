"""Showing text the lab did not write: a participant's beacon, a tag, a roster, a file name.

Such text may carry terminal control sequences — an OSC 52 clipboard write
(``ESC ] 52 ; c ; … BEL``), a cursor move, a bidi override that reorders what follows — or
Rich markup (``[/]``, ``[link=…]``). Everything shown on a terminal from such a source goes
through :func:`shown` (plain output) or :func:`shown_text` (Rich/Textual, never parsed as
markup): every character Python does not call printable is written as its escape (``\\x1b``,
``\\u202e``), so the terminal receives only printable characters and the reader sees what
was there. JSON output needs nothing of this: ``json.dumps`` escapes control characters.

Cheap to import (the standard library only; Rich is loaded by :func:`shown_text`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

ELLIPSIS = "…"


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value: Any, limit: int | None = None) -> str:
    """``value`` as text safe to write on a terminal: each control or format character (C0, DEL,
    C1, line and paragraph separators, bidi and zero-width characters, lone surrogates) made
    visible as its escape; cut to ``limit`` characters (with "…") when given. Idempotent."""
    text = value if isinstance(value, str) else str(value)
    if not (text.isascii() and text.isprintable()):
        text = "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + ELLIPSIS
    return text


def shown_text(value: Any, style: str = "", *, limit: int | None = None, **kwargs: Any) -> Text:
    """:func:`shown` as a Rich ``Text``: styled, never parsed as markup (``[/]`` stays ``[/]``)."""
    from rich.text import Text

    return Text(shown(value, limit), style=style, **kwargs)
