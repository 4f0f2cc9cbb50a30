"""The configs and sweeps shipped inside the package: where they are, their names, what
their headers say.

Each shipped config is a YAML file in ``mlp_cli/configs/`` (the repository's top-level
``configs/`` links there) whose leading comment block describes it: the first sentence says
what network it trains, and a line ``# expected: >= N% test accuracy`` states the MNIST test
accuracy it must reach (`scripts/reproduce.py` checks it). A config is named by its file name
without ``.yaml``, so ``mlp train --config mnist-400-25-10`` works from any folder.

Each shipped sweep is a YAML file in ``mlp_cli/sweeps/`` (the repository's ``sweeps/`` links
there) whose ``config:`` is a shipped config's name, so ``mlp sweep depth-width`` works from
any folder too.

Reading and validating a config is `mlp_cli.config`'s job; this module only finds the files
and reads their comments, with no import heavier than `re`, so ``--help`` stays fast.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
SWEEPS_DIR = Path(__file__).resolve().parent / "sweeps"
DEFAULT_CONFIG = "mnist-400-25-10"  # the config `mlp train` uses when none is given
_SUFFIX = ".yaml"
_EXPECTED = re.compile(r"^expected:\s*>=\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*test accuracy\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped config and what its header says about it."""

    name: str  # file name without .yaml, e.g. "mnist-400-25-10"
    path: Path
    description: str  # the header's first sentence
    expected: float | None  # test accuracy it must reach, in percent (None: no target)


def header_lines(text: str) -> list[str]:
    """The leading comment block of a YAML file, each line without its ``#`` and one space:
    blank lines are skipped, and the block ends at the first line that is neither."""
    filled = (line for line in text.splitlines() if line.strip())
    comments = itertools.takewhile(lambda line: line.startswith("#"), filled)
    return [line[1:].removeprefix(" ") for line in comments]


def _describe(path: Path) -> ShippedConfig:
    lines = [line.strip() for line in header_lines(path.read_text(encoding="utf-8"))]
    targets = [float(m.group(1)) for m in map(_EXPECTED.match, lines) if m]
    text = " ".join(line for line in lines if line and not _EXPECTED.match(line))
    description = _SENTENCE_END.split(text, maxsplit=1)[0]
    return ShippedConfig(path.stem, path, description, targets[-1] if targets else None)


def shipped_configs() -> list[ShippedConfig]:
    """Every shipped config, sorted by name."""
    return [_describe(path) for path in sorted(CONFIGS_DIR.glob(f"*{_SUFFIX}"))]


def _named(folder: Path, name: str) -> Path | None:
    """The file called `name` (``.yaml`` may be added) in `folder`, or None."""
    stem = name.removesuffix(_SUFFIX)
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    path = folder / f"{stem}{_SUFFIX}"
    return path if path.is_file() else None


def shipped_sweeps() -> list[str]:
    """The names of the shipped sweeps, sorted."""
    return [path.stem for path in sorted(SWEEPS_DIR.glob(f"*{_SUFFIX}"))]


def resolve(spec: str | Path, folder: Path = CONFIGS_DIR) -> Path:
    """The file a ``--config`` value (or, with `folder` SWEEPS_DIR, a sweep file) means: an
    existing file as given, else the shipped file of that name (a bare name such as
    ``mnist-400-25-10``), else `spec` unchanged (reading it then reports that it is missing)."""
    path = Path(spec)
    if path.is_file() or len(path.parts) != 1:
        return path
    return _named(folder, str(spec)) or path
