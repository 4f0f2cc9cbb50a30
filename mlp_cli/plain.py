"""Text that did not come from our own code, made safe to print.

File names, config values, `--set` values, model metadata and environment variables reach
the terminal through `plain`: rich never reads them as markup (a ``[red]`` in a file name
stays those five characters), and control characters are shown escaped, so no escape
sequence in a name can move the cursor or change the terminal's colours. Bytes of a file
name that are not UTF-8 (which Python holds as lone surrogates, ``\udc9b`` for 0x9b) are
shown as ``\x9b``: never written raw, where 0x9b is a terminal's 8-bit CSI, and never an
encoding error. `command` quotes the arguments of a command printed for the user to copy,
and `json_text` writes the undecodable bytes alone that way (`decodable`), for JSON output.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is loaded by `plain` alone: the library's checks only need `shown`
    from rich.text import Text

# C0 controls except tab and newline, DEL, the C1 controls (which some terminals obey), and
# lone surrogates (undecodable bytes of a file name, or broken text).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # the byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # _CONTROL, tab and newline too


def escape_controls(text: str) -> str:
    """`text` with each control character and undecodable byte written as a Python escape
    (``\\x1b``, ``\\xff``)."""
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def decodable(text: str) -> str:
    """`text` with each undecodable byte (a lone surrogate) written as `escape_controls`
    writes it (``\\xff``), and nothing else changed: JSON has escapes of its own for the
    other controls, but none for bytes that are not UTF-8."""
    return _SURROGATE.sub(lambda m: _escape(m.group()), text)


def _decoded(value: object) -> object:
    """`value` with every string in it, keys too, and every path made `decodable`."""
    if isinstance(value, str | PurePath):
        return decodable(str(value))
    if isinstance(value, dict):
        return {_decoded(key): _decoded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_decoded(item) for item in value]
    return value


def json_text(value: object, **options: Any) -> str:
    """``json.dumps(value, **options)`` with every string and path in `value` made
    `decodable` first: the one way mlp writes JSON for the user, so a name that is not
    UTF-8 reads the same (``\\xff``) in every command's output."""
    return json.dumps(_decoded(value), **options)


def shown(name: object) -> str:
    """A name the user gave (a file, folder or pattern) as printed within a line: controls
    escaped as by `escape_controls`, and tab and line break too (``\\t``, ``\\n``), so that
    a name holding them cannot break the line or the table it is printed in."""
    return _NAME_CONTROL.sub(lambda m: _escape(m.group()), str(name))


def command(prefix: str, *args: object) -> str:
    """A command line for the user to copy: `prefix`, then each argument shell-quoted (so
    ``my runs/a;touch x`` stays one harmless argument) and shown as by `shown`."""
    return " ".join([prefix, *(shown(shlex.quote(str(arg))) for arg in args)])


def plain(text: object, style: str = "") -> Text:
    """`text` as a rich `Text` that is never parsed as markup, controls escaped."""
    from rich.text import Text

    return Text(escape_controls(str(text)), style=style)


def plain_name(name: object, style: str = "") -> Text:
    """`plain` for a name the user gave, printed within a line: as by `shown`, its tabs and
    line breaks are escaped too."""
    from rich.text import Text

    return Text(shown(name), style=style)
