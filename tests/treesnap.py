"""Snapshots of a folder tree, to prove that a command left what was there as it was.

`snapshot(root)` maps every path under `root` (relative, as text) to its content: a file's
bytes, ``"-> TARGET"`` for a symlink (never followed), ``"folder"`` for a folder, its
mode and inode for a FIFO, socket or device (replaced, it would be another inode).
`assert_kept(before, after)` fails, listing them, when anything in `before` is missing or
different in `after` (new paths are allowed; compare the snapshots with ``==`` to forbid
them too).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

Tree = dict[str, bytes | str]


def snapshot(root: Path) -> Tree:
    """Every file, symlink and folder under `root` with its content."""
    tree: Tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                tree[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                tree[key] = "folder"
            elif path.is_file():
                tree[key] = path.read_bytes()
            else:  # a FIFO, socket or device: never opened (a FIFO would block)
                st = path.lstat()
                tree[key] = f"special {stat.filemode(st.st_mode)} {st.st_ino}"
    return tree


def assert_kept(before: Tree, after: Tree) -> None:
    """Everything in `before` is in `after`, byte for byte."""
    changed = sorted(key for key, value in before.items() if after.get(key) != value)
    assert not changed, f"changed or removed: {changed}"


def added(before: Tree, after: Tree) -> list[str]:
    """Paths in `after` that were not in `before`."""
    return sorted(set(after) - set(before))
