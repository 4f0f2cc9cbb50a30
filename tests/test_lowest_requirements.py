"""`scripts/lowest_requirements.py`, which `make check-lowest` installs from: each runtime
dependency pinned to the lower bound pyproject.toml states for it, and the dev extra's test
tools as the extra states them; and when the Makefile makes that environment again."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from scripts.lowest_requirements import PYPROJECT, lowest_requirements


def project(dependencies: list[str], dev: list[str] | None = None) -> dict[str, Any]:
    """A [project] table with these dependencies and dev extra."""
    return {"dependencies": dependencies, "optional-dependencies": {"dev": dev or []}}


def test_each_dependency_is_pinned_to_its_lower_bound_with_its_extras_and_markers() -> None:
    table = project(
        ["numpy>=1.26", "typer>=0.26,<1", "Pillow~=10.1", "rich[jupyter]>=13.8; os_name == 'nt'"],
        dev=["pytest>=8", "PyYAML>=6", "ruff>=0.5"],
    )
    assert [str(r) for r in lowest_requirements(table, ["pytest", "pyyaml"])] == [
        "numpy==1.26",
        "typer==0.26",
        "Pillow==10.1",
        'rich[jupyter]==13.8; os_name == "nt"',
        "pytest>=8",
        "PyYAML>=6",
    ]


@pytest.mark.parametrize("dependency", ["numpy", "numpy<2", "numpy>1.26", "numpy>=1.26,>=1.27"])
def test_a_dependency_without_one_lower_bound_is_refused(dependency: str) -> None:
    with pytest.raises(SystemExit, match=f"{dependency!r} must state one lower bound"):
        lowest_requirements(project([dependency]), [])


def test_a_tool_the_dev_extra_does_not_list_is_refused() -> None:
    with pytest.raises(SystemExit, match="the dev extra does not list hypothesis"):
        lowest_requirements(project(["numpy>=1.26"], dev=["pytest>=8"]), ["hypothesis"])


def test_every_runtime_dependency_of_this_project_has_a_lower_bound_to_test() -> None:
    table = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    pinned = lowest_requirements(table, [])
    assert [r.name for r in pinned] == [Requirement(d).name for d in table["dependencies"]]
    assert all(str(r.specifier).startswith("==") for r in pinned)


def test_an_environment_made_before_the_makefile_changed_its_tools_is_made_again(
    tmp_path: Path,
) -> None:
    # LOWEST_TOOLS lives in the Makefile: an environment made with a tool since dropped
    # (jsonschema, which brought attrs into the start-up tests) must not be used on.
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make here")
    (tmp_path / ".installed").touch()  # newer than pyproject.toml and the script
    dry_run = subprocess.run(
        [make, "--dry-run", "--what-if=Makefile", f"LOWEST={tmp_path}", "check-lowest"],
        cwd=PYPROJECT.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"rm -rf {tmp_path}" in dry_run.stdout
