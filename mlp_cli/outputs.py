"""Where `mlp` writes: destinations checked before the work, errors while writing named.

Every writer goes through here: run folders, pictures (learning curves, hidden units,
confusion heatmaps, galleries, misclassified digits, saved network inputs), the link to
the newest run.

- `check_folder` says, before any work starts, whether a folder can be created or written
  into: a file in the way, a name longer than the file system allows, a read-only mount,
  /proc or a folder without permission are refused there, as a `UsageError` naming the path
  (a disk already full, as an `OutputError`: that is no mistake in the command).
- `check_picture` says whether a picture may be written at a path: its name must end in an
  image suffix, and whatever is there already must be a picture `mlp` drew (pictures carry
  `PICTURE_MARK` in their metadata), so a model, a checkpoint or a user's own file is
  never replaced.
- `writing` turns an `OSError` while writing (a full disk, a mount gone read-only) into
  an `OutputError` naming the path; `save_picture` writes a picture atomically with its mark.

Left out: what is written (`viz`, `train`) and the `.npz` format (`checkpoint`).  Only the
standard library is imported here; Pillow only inside `save_image`.
"""

from __future__ import annotations

import errno
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING

from mlp_cli.errors import OutputError, UsageError

if TYPE_CHECKING:
    from PIL import Image

PICTURE_MARK = "mlp-cli picture"  # in every picture's metadata: what makes it ours to replace
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")  # matplotlib figures
IMAGE_SUFFIXES = (".png",)  # pictures drawn pixel by pixel with Pillow
_MARK_SCAN = 64 * 1024  # bytes read at each end of a file when looking for the mark
_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "a name in the path is too long",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "that place does not accept new files",
}


def reason(exc: OSError) -> str:
    """What went wrong, in words, with the system's own message."""
    words = _REASONS.get(exc.errno or 0)
    system = exc.strerror or str(exc)
    return f"{words} ({system})" if words and words.lower() != system.lower() else system


@contextmanager
def writing(path: Path | str, what: str, advice: str = "") -> Iterator[None]:
    """Turn an OSError raised while writing `what` at `path` into an `OutputError`."""
    try:
        yield
    except OSError as exc:
        tail = advice or "Free some space or choose another place, then run the command again."
        raise OutputError(f"could not write {what} '{path}': {reason(exc)}. {tail}") from None


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _nearest_existing(path: Path) -> tuple[Path, list[str]]:
    """The deepest part of `path` that exists (as the user wrote it) and the names below it."""
    missing: list[str] = []
    current = path
    while True:
        try:
            os.stat(current)
            return current, missing
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(current):  # a link to nowhere: it is there, but no folder
                return current, missing
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise UsageError(f"cannot use '{path}': {reason(exc)}") from None
        if current.name in ("", ".", ".."):  # nothing left to strip: judge the absolute path
            absolute = Path(os.path.abspath(current))
            if absolute == current:
                return current, missing
            current = absolute
            continue
        missing.insert(0, current.name)
        current = current.parent


def check_folder(path: Path | str, what: str = "folder") -> None:
    """Refuse, before any work starts, a folder that cannot be created or written into.

    `what` names it in the message ("run folder", "folder for --misclassified"...).
    """
    path = Path(path)
    existing, missing = _nearest_existing(path)
    if not existing.is_dir():
        kind = "a link to nowhere" if not existing.exists() else "a file"
        if not missing:
            raise UsageError(
                f"the {what} '{path}' is {kind}, not a folder; give the path of a folder "
                "(new, or one to write into)"
            )
        raise UsageError(f"cannot create the {what} '{path}': '{existing}' is {kind}, not a folder")
    limit = _name_max(existing)
    for name in missing:
        size = len(os.fsencode(name))
        if size > limit:
            raise UsageError(
                f"cannot create the {what} '{path}': the name '{name[:40]}...' is {size} bytes "
                f"long, and this file system allows at most {limit} (ENAMETOOLONG); choose a "
                "shorter name"
            )
    try:  # the one honest test of writability: make something there, then remove it
        if missing:
            os.rmdir(tempfile.mkdtemp(prefix=".mlp-probe-", dir=existing))
        else:
            fd, probe = tempfile.mkstemp(prefix=".mlp-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        where = f"'{path}'" if not missing else f"'{path}' (inside '{existing}')"
        # A full disk is a condition of the moment, not a wrong argument: the run-time code.
        error = OutputError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else UsageError
        raise error(
            f"cannot write the {what} {where}: {reason(exc)}; choose another place"
        ) from None


def is_own_picture(path: Path, also: tuple[bytes, ...] = ()) -> bool:
    """Whether `path` is a regular file carrying `PICTURE_MARK` (or one of `also`)."""
    if path.is_symlink() or not path.is_file():
        return False
    marks = (PICTURE_MARK.encode(), *also)
    try:
        with path.open("rb") as f:
            head = f.read(_MARK_SCAN)
            f.seek(max(0, f.seek(0, os.SEEK_END) - _MARK_SCAN))
            tail = f.read(_MARK_SCAN)
    except OSError:
        return False
    return any(mark in head or mark in tail for mark in marks)


def check_picture(
    path: Path | str,
    what: str = "picture",
    suffixes: tuple[str, ...] = FIGURE_SUFFIXES,
    also: tuple[bytes, ...] = (),
) -> Path:
    """Refuse, before any work, a picture path `mlp` must not write; returns it as a Path.

    The name must end in one of `suffixes`; an existing file there must be a picture `mlp`
    drew (see `is_own_picture`); its folder must be creatable and writable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        shown = f"'{path.suffix}'" if path.suffix else "a name without a suffix"
        raise UsageError(
            f"cannot write the {what} '{path}': {shown} is not a picture format mlp writes "
            f"here; use a name ending in {', '.join(suffixes)}"
        )
    if os.path.isdir(path):
        raise UsageError(
            f"cannot write the {what} '{path}': it is a folder; give the path of the image "
            "file to write"
        )
    if os.path.lexists(path) and not is_own_picture(path, also):
        raise UsageError(
            f"'{path}' already exists and is not a picture mlp drew, so it is left as it is; "
            "choose another name, or move that file away first"
        )
    check_folder(path.parent, f"folder for '{path.name}'")
    size, limit = len(os.fsencode(path.name)), _name_max(_nearest_existing(path.parent)[0])
    if size > limit:
        raise UsageError(
            f"cannot write the {what} '{path}': its name is {size} bytes long, and this file "
            f"system allows at most {limit} (ENAMETOOLONG); choose a shorter name"
        )
    return path


def save_picture(path: Path, what: str, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside `path`, then move it into place.

    A full disk or any other write error leaves what was at `path` untouched and becomes
    an `OutputError` naming `path`.
    """
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
    return path


def save_image(image: Image.Image, path: Path, what: str = "picture") -> Path:
    """Write a Pillow image as a PNG carrying `PICTURE_MARK` (see `save_picture`)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", PICTURE_MARK)
    return save_picture(path, what, lambda f: image.save(f, format="PNG", pnginfo=info))


def unique_names(stems: list[str], pattern: str = "{stem}-input.png") -> list[str]:
    """A file name per stem, made unique by ``-2``, ``-3``... where stems repeat."""
    taken: set[str] = set()
    names: list[str] = []
    for stem in stems:
        name = pattern.format(stem=stem)
        n = 1
        while name.lower() in taken:  # also apart on case-insensitive file systems
            n += 1
            name = pattern.format(stem=f"{stem}-{n}")
        taken.add(name.lower())
        names.append(name)
    return names
