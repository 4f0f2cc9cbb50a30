"""Text that did not come from our own code, made safe to print.

File names, config values, `--set` values, model metadata and environment variables reach
the terminal through `plain`: rich never reads them as markup (a ``[red]`` in a file name
stays those five characters), and control characters are shown escaped, so no escape
sequence in a name can move the cursor or change the terminal's colours.
"""

from __future__ import annotations

import re

from rich.text import Text

# C0 controls except tab and newline, DEL, and the C1 controls (which some terminals obey).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """`text` with each control character written as a Python escape (``\\x1b``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def plain(text: object, style: str = "") -> Text:
    """`text` as a rich `Text` that is never parsed as markup, controls escaped."""
    return Text(escape_controls(str(text)), style=style)
