"""Untrusted text made safe to print on a terminal: its control characters made visible.

A file name, or text read from a file someone else wrote, may hold escape sequences (move
the cursor, clear the screen, set the window title, write the clipboard with OSC 52). Printed
raw they act on the user's terminal; shown through :func:`visible` they read as ``\\x1b``.
Standard library only.
"""

from __future__ import annotations

import unicodedata

# Control (C0, DEL, C1), format (bidirectional overrides, zero-width), surrogate (an undecodable
# byte of a file name) and line/paragraph separator characters.
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def visible(text: str) -> str:
    """``text`` with each character that a terminal would act on (or hide) written as its
    Python escape (``\\x1b``, ``\\n``, ``\\u202e``, ``\\udcff``); other text is unchanged."""
    if text.isprintable():
        return text  # the common case, at C speed (isprintable is False for every character escaped here)
    return "".join(c.encode("unicode_escape", "backslashreplace").decode("ascii") if unicodedata.category(c) in _HIDDEN
                   else c for c in text)
