"""Print requirements that pin every runtime dependency to the lower bound pyproject.toml
declares for it, followed by the dev extra's requirements for the tools named on the command
line.

`make check-lowest` installs them next to the package and runs the tests there, so the oldest
versions the package claims to work with are tested, not only the newest that `make install`
gets. This is uv's `--resolution lowest-direct` with pip: direct dependencies at their lowest,
everything they pull in as pip resolves it. The bounds are read here, never restated.

    python scripts/lowest_requirements.py pytest hypothesis PyYAML > lowest.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
LOWER_BOUND_OPERATORS = (">=", "~=", "==")  # each names the least version it allows


def lowest(requirement: Requirement) -> Requirement:
    """`requirement` pinned with `==` to its one lower bound (extras and markers kept).

    A dependency with no lower bound, or more than one, is refused: its lowest version
    would be whatever the index holds, not something pyproject.toml states.
    """
    bounds = [s.version for s in requirement.specifier if s.operator in LOWER_BOUND_OPERATORS]
    if len(bounds) != 1:
        raise SystemExit(
            f"{PYPROJECT}: dependency {str(requirement)!r} must state one lower bound"
            f" ({', '.join(LOWER_BOUND_OPERATORS)}) to be tested at it"
        )
    pinned = Requirement(str(requirement))
    pinned.specifier = SpecifierSet(f"=={bounds[0]}")
    return pinned


def lowest_requirements(project: dict[str, Any], tools: list[str]) -> list[Requirement]:
    """The runtime dependencies at their lower bounds, then `tools` as the dev extra states them.

    `project` is pyproject.toml's [project] table; a tool missing from the dev extra is refused.
    """
    dev = {
        canonicalize_name(r.name): r
        for r in map(Requirement, project["optional-dependencies"]["dev"])
    }
    missing = [tool for tool in tools if canonicalize_name(tool) not in dev]
    if missing:
        raise SystemExit(f"{PYPROJECT}: the dev extra does not list {', '.join(missing)}")
    pinned = [lowest(Requirement(line)) for line in project["dependencies"]]
    return pinned + [dev[canonicalize_name(tool)] for tool in tools]


def main() -> int:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    for requirement in lowest_requirements(project, sys.argv[1:]):
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
