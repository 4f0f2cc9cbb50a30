"""Where `mlp` writes: destinations checked before the work, errors while writing named.

Every writer goes through here: run folders, pictures (learning curves, hidden units,
confusion heatmaps, galleries, misclassified digits, saved network inputs), the link to
the newest run. A destination is judged before any work starts (`check_folder`,
`check_picture`, `check_replaceable`), as a `UsageError` naming the path; a file is
written whole or not at all (`atomic_write`), and an `OSError` while writing becomes an
`OutputError` naming the path (`writing`). An existing picture is replaced only if it
carries `PICTURE_MARK`, so a model, a checkpoint or a user's own file never is; a folder
being written is held by one process at a time (`FolderLock`).

Left out: what is written (`viz`, `train`) and the `.npz` format (`checkpoint`).  Only the
standard library is imported here; Pillow only inside `save_image`.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # Windows: folders are not locked (see FolderLock)
    fcntl = None  # type: ignore[assignment]

from mlp_cli.errors import OutputError, UsageError
from mlp_cli.limits import file_kind
from mlp_cli.plain import shown

if TYPE_CHECKING:
    from PIL import Image

PICTURE_MARK = "mlp-cli picture"  # in every picture's metadata: what makes it ours to replace
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")  # matplotlib figures
IMAGE_SUFFIXES = (".png",)  # pictures of pixels: digits, hidden units
_MARK_SCAN = 64 * 1024  # bytes read at each end of a file when looking for the mark
_TEMP_PREFIX, _TEMP_SUFFIX = ".mlp-", ".tmp"  # of a file being written (`temp_path`)
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
    errno.EFBIG: "the file would be larger than this process may write",
}


# Advice after a write error, by errno: only a full disk is solved by freeing space, and a
# file larger than `ulimit -f` allows by no other place.
_ADVICE = {
    errno.ENOSPC: "Free some space or choose another place, then run the command again.",
    errno.EDQUOT: "Free some space or choose another place, then run the command again.",
    errno.ENAMETOOLONG: "Choose a shorter name, then run the command again.",
    errno.EFBIG: "Raise the limit on the size of files (`ulimit -f`), then run the command again.",
}
_OTHER_PLACE = "Choose a place you can write to, then run the command again."


def temp_path(folder: Path) -> Path:
    """A fresh temporary name in `folder`, short whatever the destination's name."""
    return folder / f"{_TEMP_PREFIX}{secrets.token_hex(6)}{_TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether `name` has the shape of a `temp_path` name, as a write cut short leaves it."""
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def advice(exc: OSError) -> str:
    """What to do after `exc` while writing: free space only when space ran out."""
    return _ADVICE.get(exc.errno or 0, _OTHER_PLACE)


def reason(exc: OSError) -> str:
    """What went wrong, in words, with the system's own message."""
    words = _REASONS.get(exc.errno or 0)
    system = exc.strerror or str(exc)
    return f"{words} ({system})" if words and words.lower() != system.lower() else system


@contextmanager
def writing(path: Path | str, what: str, hint: str = "") -> Iterator[None]:
    """Turn an OSError raised while writing `what` at `path` into an `OutputError`."""
    try:
        yield
    except OSError as exc:
        tail = hint or advice(exc)
        raise OutputError(
            f"could not write {what} '{shown(path)}': {reason(exc)}. {tail}"
        ) from None


def _limit(folder: Path, name: str, default: int) -> int:
    """The file system's `name` limit (PC_NAME_MAX, PC_PATH_MAX) in `folder`, else `default`."""
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError):
        return default


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
                raise UsageError(f"cannot use '{shown(path)}': {reason(exc)}") from None
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
        kind = special_kind(existing) or "a file"
        if not missing:
            raise UsageError(
                f"the {what} '{shown(path)}' is {kind}, not a folder; give the path of a folder "
                "(new, or one to write into)"
            )
        raise UsageError(
            f"cannot create the {what} '{shown(path)}': '{shown(existing)}' is {kind}, not a folder"
        )
    limit = _limit(existing, "PC_NAME_MAX", 255)
    for name in missing:
        size = len(os.fsencode(name))
        if size > limit:
            raise UsageError(
                f"cannot create the {what} '{shown(path)}': the name '{shown(name[:40])}...' is "
                f"{size} bytes long, and this file system allows at most {limit} (ENAMETOOLONG); "
                "choose a shorter name"
            )
    # Every file mlp writes in the folder (a temporary name first) must fit under the path
    # limit too, and a name in it may be as long as the file system allows.
    size, path_max = len(os.fsencode(str(path))), _limit(existing, "PC_PATH_MAX", 4096)
    if size + 1 + limit >= path_max:
        raise UsageError(
            f"cannot create the {what} '{shown(path)}': its path is {size} bytes long, which "
            f"leaves no room for the names inside it under the {path_max} bytes this system "
            "allows for a path (ENAMETOOLONG); choose a shorter path"
        )
    try:  # the one honest test of writability: make something there, then remove it
        if missing:
            os.rmdir(tempfile.mkdtemp(prefix=".mlp-probe-", dir=existing))
        else:
            fd, probe = tempfile.mkstemp(prefix=".mlp-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        where = (
            f"'{shown(path)}'" if not missing else f"'{shown(path)}' (inside '{shown(existing)}')"
        )
        # A full disk is a condition of the moment, not a wrong argument: the run-time code.
        error = OutputError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else UsageError
        raise error(
            f"cannot write the {what} {where}: {reason(exc)}; choose another place"
        ) from None


def special_kind(path: Path | str) -> str | None:
    """What `path` is, in words, when it exists and is not a plain regular file (which an
    atomic write may replace); None when it is absent or a regular file."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # nothing can be there; `check_name` says why
            return None
        raise UsageError(f"cannot use '{shown(path)}': {reason(exc)}") from None
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISLNK(st.st_mode):
        if not os.path.exists(path):
            return "a link to nowhere"
        target = special_kind(os.path.realpath(path))
        return f"a link to {target}" if target else "a link to a file"
    return file_kind(st.st_mode)


def check_replaceable(path: Path | str, what: str = "file", fix: str | None = None) -> None:
    """Refuse an existing `path` that is not a plain regular file, whatever the options:
    writing ends in a rename over `path`, which would replace a device, a FIFO, a folder
    or a link (not what it points to) by a file. `fix` says what to do instead, for a path
    that mlp names itself rather than the user."""
    kind = special_kind(path)
    if kind is not None:
        raise UsageError(
            f"cannot write the {what} '{shown(path)}': it is {kind}, and mlp replaces only regular "
            f"files it may overwrite; {fix or 'choose another path'}"
        )


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
    fix: str | None = None,
) -> Path:
    """Refuse, before any work, a picture path `mlp` must not write; returns it as a Path.

    The name must end in one of `suffixes`; an existing file there must be a picture `mlp`
    drew (see `is_own_picture`); its folder must be creatable and writable. `fix` says what
    to do instead, for a path that mlp names itself rather than the user.
    """
    path = Path(path)
    picture_format(path, what, suffixes)
    if os.path.isdir(path):
        raise UsageError(
            f"cannot write the {what} '{shown(path)}': it is a folder; "
            f"{fix or 'give the path of the image file to write'}"
        )
    check_replaceable(path, what, fix)
    if os.path.lexists(path) and not is_own_picture(path, also):
        raise UsageError(
            f"'{shown(path)}' already exists and is not a picture mlp drew, so it is left as it "
            f"is; {fix or 'choose another name, or move that file away first'}"
        )
    check_folder(path.parent, f"folder for '{path.name}'")
    check_name(path, what)
    return path


def picture_format(path: Path, what: str, suffixes: tuple[str, ...] = FIGURE_SUFFIXES) -> str:
    """The format the suffix of `path` names (``png``...); refuses a suffix not in `suffixes`."""
    if path.suffix.lower() not in suffixes:
        suffix = f"'{path.suffix}'" if path.suffix else "a name without a suffix"
        raise UsageError(
            f"cannot write the {what} '{shown(path)}': {suffix} is not a picture format mlp writes "
            f"here; use a name ending in {', '.join(suffixes)}"
        )
    return path.suffix.lower().lstrip(".")


def check_name(path: Path, what: str) -> None:
    """Refuse a file name longer than its folder's file system allows."""
    size = len(os.fsencode(path.name))
    limit = _limit(_nearest_existing(path.parent)[0], "PC_NAME_MAX", 255)
    if size > limit:
        raise UsageError(
            f"cannot write the {what} '{shown(path)}': its name is {size} bytes long, and this "
            f"file system allows at most {limit} (ENAMETOOLONG); choose a shorter name"
        )


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file beside ``path`` (`temp_path`), flush it to
    disk, then move it into place: a crash or a full disk leaves what was at ``path``.

    The file is created as any new file here is (0666 less the umask), so a shared runs
    folder stays readable; it is handed over open because ``np.savez`` appends ``.npz``
    to a *path*.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename itself durable where supported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_picture(path: Path, what: str, write: Callable[[IO[bytes]], object]) -> Path:
    """`atomic_write` of a picture: a full disk or any other write error leaves what was at
    `path` untouched and becomes an `OutputError` naming `path` and `what` (as the checks
    name it: "figure", "picture of hidden units").
    """
    check_replaceable(path, what)  # again: something may have appeared since the check
    with writing(path, f"the {what}"):
        atomic_write(path, write)
    return path


def save_image(image: Image.Image, path: Path, what: str = "picture") -> Path:
    """Write a Pillow image as a PNG carrying `PICTURE_MARK` (see `save_picture`)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", PICTURE_MARK)
    return save_picture(path, what, lambda f: image.save(f, format="PNG", pnginfo=info))


def same_place(a: Path | str, b: Path | str) -> bool:
    """Whether `a` and `b` name the same file, links followed; told apart only by case
    counts as the same too, as it is on case-insensitive file systems."""
    return os.path.realpath(a).casefold() == os.path.realpath(b).casefold()


def check_distinct(*targets: tuple[Path, str]) -> None:
    """Refuse, before any work, two outputs of one command at the same place: the second
    would overwrite what the same command has just written. Each target is (path, what)."""
    for i, (path, what) in enumerate(targets):
        for other, other_what in targets[i + 1 :]:
            if same_place(path, other):
                raise UsageError(
                    f"the {other_what} '{shown(other)}' is the same file as the {what} "
                    f"'{shown(path)}', which this command also writes: the one would overwrite "
                    "the other; choose another path"
                )


class UniqueNames:
    """File names from `pattern`, one per stem as they come, made unique by ``-2``,
    ``-3``... where stems repeat."""

    def __init__(self, pattern: str = "{stem}-input.png") -> None:
        self.pattern = pattern
        self.taken: set[str] = set()

    def __call__(self, stem: str) -> str:
        name = self.pattern.format(stem=stem)
        n = 1
        while name.lower() in self.taken:  # also apart on case-insensitive file systems
            n += 1
            name = self.pattern.format(stem=f"{stem}-{n}")
        self.taken.add(name.lower())
        return name


def unique_names(stems: list[str], pattern: str = "{stem}-input.png") -> list[str]:
    """A file name per stem, made unique by ``-2``, ``-3``... where stems repeat."""
    name = UniqueNames(pattern)
    return [name(stem) for stem in stems]


# The locks this process holds: (pid, real path of the lock file) -> [descriptor, holds].
# The pid keeps a forked worker from taking its parent's holds for its own.
_HELD: dict[tuple[int, str], list[int]] = {}
_LOCK_TRIES = 10  # another process may remove the lock file between our open and our lock


class FolderLock:
    """An advisory lock (``flock``) on the file `path` in a folder, held by this process
    from `acquire` (or ``with``) to `release`, so that two processes never write the folder
    at once. The kernel releases it when the process ends, however it ends: a crash or a
    ``kill -9`` leaves no stale lock, at most the file, which the next holder reuses.

    Taking it again in the process that holds it only counts (a caller may hold the folder
    around a library call that takes it too); the last `release` removes the file, then
    unlocks it. A second process is refused with a `UsageError` naming the folder and the
    pid written in the file, and `otherwise` (what else the user can do) after the advice
    to wait. Where ``fcntl`` is missing (Windows), or the file system cannot lock, nothing
    is locked: `what`'s own checks are all that guard the folder.
    """

    def __init__(self, path: Path, what: str, doing: str, otherwise: str = "") -> None:
        self.path, self.what, self.doing = path, what, doing  # "run folder", "training that run"
        self.otherwise = otherwise  # "; or draw them elsewhere with ..."
        self._key: tuple[int, str] | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> FolderLock:
        key = (os.getpid(), os.path.realpath(self.path))
        held = _HELD.get(key)
        if held is None:
            held = _HELD[key] = [self._lock(), 0]
        held[1] += 1
        self._key = key
        return self

    def release(self) -> None:
        """Give back this hold; the last one of the process unlocks the folder."""
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        held = _HELD[key]
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
        fd = held[0]
        if fd < 0:
            return
        # Removed while still locked: a process that opened it meanwhile finds, once it has
        # the lock, that the name no longer leads to its file, and opens the new one.
        with suppress(OSError):
            if _same_file(fd, self.path):
                os.unlink(self.path)
        os.close(fd)

    def _lock(self) -> int:
        """The descriptor of the locked file (-1 where nothing can be locked)."""
        if fcntl is None:
            return -1
        folder = self.path.parent
        check_replaceable(
            self.path,
            f"lock file of the {self.what}",
            f"mlp keeps the {self.what}'s lock at that name, so remove or rename it, then run "
            "the command again",
        )
        for _ in range(_LOCK_TRIES):
            with writing(self.path, f"the lock file of the {self.what} '{shown(folder)}'"):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _pid_in(fd)
                os.close(fd)
                pid = f" (pid {holder})" if holder else ""
                raise UsageError(
                    f"the {self.what} '{shown(folder)}' is in use by another mlp process{pid}, "
                    f"which is {self.doing}; this one stopped before writing anything there. "
                    "Wait for that process to end (or stop it), then run the command again"
                    f"{self.otherwise}"
                ) from None
            except OSError as exc:  # a file system without locks (ENOLCK, EOPNOTSUPP)
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    return -1
                raise OutputError(
                    f"could not lock the {self.what} '{shown(folder)}': {reason(exc)}"
                ) from None
            if _same_file(fd, self.path):
                with writing(self.path, f"the lock file of the {self.what} '{shown(folder)}'"):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)  # removed by the holder before: lock the file there now
        raise OutputError(
            f"could not lock the {self.what} '{shown(folder)}': its lock file {self.path.name} "
            f"kept being replaced, {_LOCK_TRIES} times; run the command again"
        )


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open at `fd`."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _pid_in(fd: int) -> int | None:
    """The pid the holder wrote in its lock file, if it has yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
