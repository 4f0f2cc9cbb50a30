"""Typer's rich help pages, loaded without the parts of rich that `mlp` never shows.

Typer draws help pages and usage errors with `typer.rich_utils`, which imports, at its top,
`rich.markdown` (and with it markdown-it and pygments) for the "markdown" markup mode, and
`rich.traceback` (pygments again, attrs) for pretty tracebacks: together more than all the
rest of ``mlp --help`` costs.  `mlp` uses the "rich" markup mode and plain tracebacks, so
`load_rich_utils`, called where a help page is drawn, imports `typer.rich_utils` while
stand-ins take those two modules' places.  (A usage error reaches `typer.rich_utils` through
Typer's own import, so it loads the real modules: slower, but only on the way to an error.)
Every name taken from a stand-in module is a stand-in class that imports the real module
when it is first called or asked for an attribute, so a path that does use one still
works; the stand-in modules are removed from `sys.modules` once `typer.rich_utils` has
loaded, so any later import gets the real ones.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

# The modules typer.rich_utils imports only for what mlp does not use.
DEFERRED = ("rich.markdown", "rich.traceback")


class _StandIn(type):
    """The type of a stand-in class: calling it or reading its attributes imports the real
    object of its name (a class or a function; ``__module__`` names its module) and hands
    over to it."""

    def real(cls) -> Any:
        return getattr(importlib.import_module(cls.__module__), cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls.real(), name)


def _stand_in_module(name: str) -> ModuleType:
    """A module whose every attribute is a stand-in for the one of module ``name``."""
    module = ModuleType(name)

    def stand_in(attr: str) -> _StandIn:
        if attr.startswith("__"):  # what the import machinery looks for: not there
            raise AttributeError(attr)
        return _StandIn(attr, (), {"__module__": name})

    module.__dict__["__getattr__"] = stand_in
    return module


def load_rich_utils() -> None:
    """Import `typer.rich_utils` (if not yet imported) without `DEFERRED`'s modules."""
    if "typer.rich_utils" in sys.modules:
        return
    placed = {name: _stand_in_module(name) for name in DEFERRED if name not in sys.modules}
    sys.modules.update(placed)
    try:
        import typer.rich_utils  # noqa: F401
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
