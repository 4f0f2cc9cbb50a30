"""The `mlp` command line: parse arguments, call the library, render the result.

Every command is a thin layer over the library.  Library errors (`MLPError`) become one
paragraph on stderr and the error's exit code (2 for usage and config mistakes, 1 for
failures at run time); a traceback appears only with ``--debug`` or ``MLP_DEBUG=1``.

Heavy modules (NumPy, pooch, Pillow, matplotlib) are imported inside the commands that need
them, so ``mlp --help`` and shell completion stay fast.
"""

# No `from __future__ import annotations`: Typer reads every command's signature at each
# start, and evaluating annotations kept as strings was most of that work.
import contextlib
import copy
import errno
import functools
import gc
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from inspect import Parameter, signature
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from mlp_cli import __version__
from mlp_cli.errors import (
    CheckpointError,
    DataError,
    ExportError,
    MLPError,
    OutputError,
    UsageError,
)
from mlp_cli.plain import command, escape_controls, json_text, plain, plain_name, shown
from mlp_cli.richhelp import load_rich_utils
from mlp_cli.shipped import DEFAULT_CONFIG
from mlp_cli.stopping import STOP_SIGNALS, take_over
from mlp_cli.threads import ThreadChoice, ThreadSetting, let_blas_workers_sleep, limit_blas

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from mlp_cli.checkpoint import SavedModel
    from mlp_cli.config import Config
    from mlp_cli.data import Splits
    from mlp_cli.predict import Failure, Prediction
    from mlp_cli.render import DataNotices
    from mlp_cli.sweep import Sweep


F = TypeVar("F", bound=Callable[..., Any])


# The MNIST images `mlp evaluate` scores (`mlp_cli.evaluate.Split`, which loads NumPy).
Split = Literal["test", "val", "train"]


def _exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's code for a process ended by the signal behind ``exc``: 128 + its number
    (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def _plain_types(params: list[Any]) -> list[Any]:
    """Help that names what a parameter takes, as its metavar says: a flag shows nothing
    (not ``<bool>``, Typer's own ``--help`` included) and an argument its metavar alone
    (``IMAGE``, not ``<list[str]>``).  And parameters given no value skip Typer's
    validator (see `_process_value`)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        if type(param) is TyperOption:
            param.__class__ = _COMPLETION_OPTIONS.get(param.name or "", _Option)
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


def _unnamed(kind: Any) -> Any:
    """A copy of the parameter type ``kind`` whose ``get_metavar`` gives nothing: Typer 0.27
    and 0.28 print it beside an argument's metavar on a help page (``IMAGE  <str>``,
    ``RUN_DIR  <path>``).  Swapped in only to draw a help page, after which the command does
    not run; a copy, since a type may be shared (click's STRING)."""
    blank = copy.copy(kind)
    blank.get_metavar = lambda *args, **kwargs: ""
    return blank


EMPTY_PATH = "an empty path names no file or folder; give a path ('.' for the current folder)"
# The metavar of every option naming a file that mlp writes (--out of export, show, plot...).
FILE = "FILE"
FOLDER_PATH = "a path ending in '/' names a folder, not a file; give the path of the file to write"


def _process_value(
    param: TyperOption | TyperArgument, ctx: Any, value: Any, process: Callable[[Any, Any], Any]
) -> Any:
    """Typer's `process_value` (``process``) of ``value``, but for three cases.  A parameter
    given no value gets what Typer's coercion makes of None (None, or () for a parameter
    that takes several values, whatever the type) without first building the pydantic
    validator of its type (the first one built loads pydantic, for ``mlp data --help``
    too).  And an empty path is refused: Path("") is ".", so ``--out ""`` would silently
    name the current folder (read from, written into) instead of being the mistake it is;
    so is a file to write ending in '/' (or '/.'), which Path drops, so ``--out models/``
    would write a file named ``models``.  And a leading '~' of a path is the home folder,
    as when a shell expands it (it does not in ``--out=~/x`` or in quotes)."""
    if value is None and not param.required:
        value = () if param.multiple or param.nargs == -1 else None
        return value if param.callback is None else param.callback(ctx, param, value)
    if isinstance(value, str) and _takes_path(param):
        if value == "":
            raise typer.BadParameter(EMPTY_PATH)
        if param.metavar == FILE and value != "." and os.path.basename(value) in ("", "."):
            raise typer.BadParameter(FOLDER_PATH)
        value = os.path.expanduser(value)
    try:
        return process(ctx, value)
    except typer.BadParameter as error:
        # Typer 0.29 checks a choice with pydantic, whose "Value error, " came first:
        # "Invalid value for '--split': Value error, 'foo' is not one of 'test', ..."
        error.message = error.message.removeprefix("Value error, ")
        # and Typer 0.27 and 0.28 name a number option's type in their own shorthand:
        # "Invalid value for '--workers': 'two' is not a valid int range."
        if error.message.endswith(" is not a valid int range."):
            error.message = error.message.removesuffix(" int range.") + " integer."
        raise


def _no_empty_path(values: list[str]) -> list[str]:
    """The callback of an argument of paths held as text (globs): an empty one is refused
    and a leading '~' expanded, as `_process_value` does for a Path, before anything is
    read."""
    if "" in values:
        raise typer.BadParameter(EMPTY_PATH)
    return [os.path.expanduser(value) for value in values]


def _home_expanded(value: str | None) -> str | None:
    """The callback of an option naming a folder or a URI, held as text: a leading '~'
    expanded and an empty path refused, as `_process_value` does for a Path (a URI starts
    with its scheme)."""
    if value == "":
        raise typer.BadParameter(EMPTY_PATH)
    return None if value is None else os.path.expanduser(value)


def _takes_path(param: TyperOption | TyperArgument) -> bool:
    """Whether ``param`` is declared as a Path (or Path | None)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        # Typer before 0.29: a Path gets Typer's path type (click's until Typer 0.26, which
        # carries its own copy of click and does not install click itself).
        from typer.models import TyperPath  # type: ignore[attr-defined]

        return isinstance(getattr(param, "type", None), TyperPath)
    annotation = descriptor.annotation
    return Path in (get_args(annotation) or (annotation,))


class _Option(TyperOption):
    def process_value(self, ctx: Any, value: Any) -> Any:
        return _process_value(self, ctx, value, super().process_value)


# The shells Typer makes completion scripts for, by the names shellingham detects.
COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


class _ShowCompletion(_Option):
    """Typer's ``--show-completion``, with a shell it makes no completion for (which Typer
    names in a line of its own) said in one message."""

    verb = "show"

    def process_value(self, ctx: Any, value: Any) -> Any:
        # True: the flag given, the shell to be detected as Typer detects it
        if value is True and not ctx.resilient_parsing:
            import shellingham  # type: ignore[import-untyped]

            try:
                shell = shellingham.detect_shell()[0]
            except shellingham.ShellDetectionFailure:
                shell = None
            if shell not in COMPLETION_SHELLS:
                found = "could not be told" if shell is None else f"is {shell}"
                _say(
                    ERROR,
                    plain(
                        f"cannot {self.verb} shell completion: the shell mlp runs in {found},"
                        " and completion is made for bash, zsh, fish and PowerShell only. Run"
                        f" `mlp --{self.verb}-completion` in one of them."
                    ),
                    err=True,
                )
                raise typer.Exit(1)
        return super().process_value(ctx, value)


class _InstallCompletion(_ShowCompletion):
    """Typer's ``--install-completion``, with a place under HOME that it cannot write (a
    read-only home, a file where a folder should be), no home folder at all, and a shell it
    makes no completion for (which Typer names on standard output), said in one message."""

    verb = "install"

    def process_value(self, ctx: Any, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except OSError as exc:
            if _debugging() or isinstance(exc, StdoutError):  # saying where it was installed
                raise
            from mlp_cli.outputs import reason

            # mkdir's EEXIST: something other than a folder is where a folder must be
            why = "it is not a folder" if exc.errno == errno.EEXIST else reason(exc)
            _say(
                ERROR,
                "cannot install shell completion: '",
                plain_name(exc.filename or Path.home()),
                f"' cannot be written: {why}. Make HOME a folder you can write to, or "
                "save what `mlp --show-completion` prints where your shell reads completions.",
                err=True,
            )
            raise typer.Exit(1) from None
        except RuntimeError as exc:
            # Path.home(): HOME unset and no home folder the system knows, or a HOME of
            # '~...', which Python takes as it is
            if _debugging() or isinstance(exc, typer.Exit):  # (an exit, said already)
                raise
            home = os.environ.get("HOME")
            _say(
                ERROR,
                "cannot install shell completion: it goes in the home folder, and this process"
                " has none (",
                "HOME is not set, and the system knows no home folder for this user"
                if home is None
                else plain(f"HOME is '{home}', which names no folder"),
                "). Set HOME to the path of your home folder, or save what `mlp"
                " --show-completion` prints where your shell reads completions.",
                err=True,
            )
            raise typer.Exit(1) from None


_COMPLETION_OPTIONS = {"install_completion": _InstallCompletion, "show_completion": _ShowCompletion}


class _Argument(TyperArgument):
    def process_value(self, ctx: Any, value: Any) -> Any:
        return _process_value(self, ctx, value, super().process_value)

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar is not None else super().display_type_rich(ctx)

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        # Typers before 0.29 drop the "..." of an argument that takes several values when it
        # has a metavar: "mlp predict [OPTIONS] IMAGE" would say that it takes one image.
        pieces: list[str] = super().get_usage_pieces(ctx)
        if self.nargs != 1 and pieces and not pieces[-1].endswith("..."):
            pieces[-1] += "..."
        return pieces


class _PlainHelp:  # the help of _Command and _Group: see _Typer
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_types(super().get_params(ctx))  # type: ignore[misc]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        load_rich_utils()
        for param in self.get_params(ctx):
            kind = getattr(param, "type", None)  # Typer 0.29 on: none, and no type shown
            if isinstance(param, TyperArgument) and param.metavar and kind is not None:
                param.type = _unnamed(kind)  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)  # type: ignore[misc]


class _Command(_PlainHelp, TyperCommand):
    pass


class _Group(_PlainHelp, TyperGroup):
    pass


class _Typer(typer.Typer):
    """`typer.Typer` whose commands and groups render their help with `_plain_types` and
    `load_rich_utils` (`_PlainHelp`), and whose commands turn library errors into messages
    (`handle_errors`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, cls=_Command, **kwargs)
        return lambda command: register(handle_errors(command))


app = _Typer(
    name="mlp",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = _Typer(help="Download, import and inspect the MNIST dataset.", no_args_is_help=True)
config_app = _Typer(
    help="List the shipped configs, show a config resolved, print the config schema.",
    no_args_is_help=True,
)
show_app = _Typer(help="Draw what a trained network has learned.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
app.add_typer(show_app, name="show")

MAX_TERMINAL_SIZE = 10_000  # columns or lines, more than any terminal has

# rich reads COLUMNS and LINES with int() once str.isdigit takes them, as it takes "²" and
# more digits than int() converts; Typer reads TERMINAL_WIDTH with int() alone. A value
# int() refuses sizes nothing, nor does one beyond any terminal (help pages and usage errors
# are panels as wide as the terminal): unset, it leaves rich to ask the terminal.
for _name in ("COLUMNS", "LINES", "TERMINAL_WIDTH"):
    try:
        _size = int(os.environ.get(_name) or 0)
    except ValueError:
        _size = -1
    if not 0 <= _size <= MAX_TERMINAL_SIZE:
        os.environ.pop(_name, None)
console = Console()
err_console = Console(stderr=True)
for _console in (console, err_console):
    if _console.width < 1:  # COLUMNS=0: rich would print every line as nothing
        _console.width = 80
_debug = {"on": False}

ERROR, WARNING = ("error: ", "bold red"), ("warning: ", "bold yellow")


def _say(*parts: str | Text | tuple[str, str], err: bool = False, soft_wrap: bool = True) -> None:
    """One line of our words and `plain` text from elsewhere (paths, messages), on stdout
    or stderr; soft-wrapped by default, so a narrow terminal breaks no path or command."""
    (err_console if err else console).print(Text.assemble(*parts), soft_wrap=soft_wrap)


def _debugging() -> bool:
    return _debug["on"] or os.environ.get("MLP_DEBUG", "") not in ("", "0")


DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks for errors (or set MLP_DEBUG=1)."),
]


# OSErrors that mean the path given is wrong, not that the system failed: the usage code.
_ARGUMENT_ERRNOS = (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ENOENT, errno.ELOOP, errno.EISDIR)


# What the system's loader says of a module it could not map into memory, as it does of
# one loaded late (NumPy's random module at its first use) under `ulimit -v`.
_NOT_MAPPED = "failed to map segment from shared object"


def _out_of_memory(exc: MemoryError | ImportError) -> str:
    """One paragraph for an allocation the system refused: NumPy's words for it (the size
    and shape it asked for), or the loader's for a module it could not map, and the
    process's `ulimit -v`, if one is set."""
    limit = ""
    with contextlib.suppress(ImportError, OSError, ValueError):  # `resource`: Unix only
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limit = f" (`ulimit -v` allows it {soft / 2**20:,.0f} MiB)"
    asked = str(exc).strip().rstrip(".") or "the system refused an allocation"
    return (
        f"out of memory: {asked}. mlp needs more memory than this process may use{limit};"
        " free some memory or raise the limit."
    )


def handle_errors(command: F) -> F:
    """Turn library errors into a message on stderr and their exit code.

    The command also gets a ``--debug`` option, so that it works after the command's name
    (``mlp train --debug``) as well as before it.  Every command of `app` gets this from
    ``app.command()``; a command that is decorated with it too is wrapped once.
    """
    if getattr(command, "handles_errors", False):
        return command

    @functools.wraps(command)
    def wrapper(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        if debug:
            _debug["on"] = True
        try:
            return command(*args, **kwargs)
        except MLPError as exc:
            if _debugging():
                raise
            _say(ERROR, plain(exc), err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # A safety net under the checks where paths are resolved: a path the system
            # refused (too long, a file where a folder should be...) ends in one message.
            if _debugging() or isinstance(exc, StdoutError) or exc.filename is None:
                raise
            from mlp_cli.outputs import reason

            _say(ERROR, "cannot use '", plain_name(exc.filename), f"': {reason(exc)}.", err=True)
            raise typer.Exit(2 if exc.errno in _ARGUMENT_ERRNOS else 1) from None
        except (MemoryError, ImportError) as exc:
            if _debugging() or (isinstance(exc, ImportError) and _NOT_MAPPED not in str(exc)):
                raise
            _say(ERROR, _out_of_memory(exc), err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            if _debugging():
                # Raised on, Typer would end it as a silent exit 130 whatever the signal:
                # the traceback --debug asks for is shown here, and the signal's code kept.
                import traceback

                traceback.print_exc()
            code = _exit_code(exc)
            err_console.print(f"interrupted ({signal.Signals(code - 128).name})", style="yellow")
            raise typer.Exit(code) from None

    params = signature(command, eval_str=True)
    debug = Parameter("debug", Parameter.KEYWORD_ONLY, default=False, annotation=DebugOpt)
    wrapper.__signature__ = params.replace(  # type: ignore[attr-defined]
        parameters=[*params.parameters.values(), debug]
    )
    wrapper.handles_errors = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"mlp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version,
            is_eager=True,
            help="Print the version.",
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Train, evaluate and inspect NumPy multilayer perceptrons on handwritten digits."""
    _debug["on"] = debug


ConfigArg = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        metavar="NAME|FILE",
        help="A shipped config's name (see mlp config list) or a YAML file.",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key, e.g. --set optimizer.lr=1e-3 (repeatable).",
    ),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        metavar="FILE|DIR",
        help="A .npz model or a run directory (default: runs/latest, the newest run).",
    ),
]


def _count(help: str, most: int | None = None) -> Any:
    """An option taking a count N, 1 or more (at most ``most``)."""
    return typer.Option(min=1, max=most, metavar="N", help=help)


def _out(help: str, metavar: str | None = None) -> Any:
    """The option naming what a command writes."""
    return typer.Option("--out", "-o", metavar=metavar, help=help)


# -- train -----------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt; exits with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def _stop_on_sigint() -> Iterator[Callable[[], int | None]]:
    """First Ctrl-C (or SIGTERM, SIGHUP) asks the loop to stop after the current step; a
    second one aborts.  The stop function returns the signal's number once one came."""
    requested: dict[str, int | None] = {"signum": None}

    def handler(signum: int, frame: object) -> None:
        if requested["signum"] is not None:
            raise Terminated(signum) if signum != signal.SIGINT else KeyboardInterrupt
        requested["signum"] = signum
        err_console.print(
            "[yellow]stopping after this step and saving a checkpoint "
            "(press Ctrl-C again to abort without saving)[/]"
        )

    try:
        previous = {signum: take_over(signum, handler) for signum in STOP_SIGNALS}
    except ValueError:  # not the main thread (e.g. inside some test runners)
        yield lambda: None
        return
    try:
        yield lambda: requested["signum"]
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _threads_option(option: str | None) -> ThreadSetting:
    """``--threads`` read as a number or auto (None when not given), refused as the usage
    mistake it is before a config or run is read."""
    if option is None:
        return None
    text = option.strip()
    # ASCII digits (str.isdigit alone takes "²"), fewer than int() refuses (4301): 18
    # digits already count more threads than any machine has
    digits = text.isascii() and text.isdigit() and len(text) <= 18
    if text == "auto":
        return "auto"
    if digits and int(text) >= 1:
        return int(text)
    from mlp_cli.limits import shorten

    raise UsageError(
        f"--threads takes a number of threads (1 or more) or auto, not {shorten(option, 40)!r}"
    )


def _choose_threads(
    option: ThreadSetting, cfg: "Config", earlier: int | None = None
) -> ThreadChoice:
    """``--threads`` (`_threads_option`), else the config's, resolved once for this run
    (`auto` on resume keeps the ``earlier`` sessions' count)."""
    from mlp_cli.threads import choose_threads

    setting = cfg.training.threads if option is None else option
    return choose_threads(setting, cfg.model.layers, cfg.training.batch_size, earlier=earlier)


def _refuse_with_resume(ctx: typer.Context, *names: str) -> None:
    """--resume reads the run's own config and folder: options that would choose another
    config or folder are a mistake, not something to ignore."""
    sources = {name: ctx.get_parameter_source(name) for name in names}
    given = [f"--{n}" for n, s in sources.items() if s is not None and s.name == "COMMANDLINE"]
    if given:
        raise UsageError(
            f"--resume cannot be combined with {' or '.join(given)}: a resumed run keeps its "
            "own config.yaml and folder. Drop them (change settings that may change on resume "
            "with --set, e.g. --set training.epochs=N), or start a new run without --resume."
        )


def _given(ctx: typer.Context, *names: str) -> list[str]:
    """The options among ``names`` (their parameter names) given on the command line, each
    as its flag (``--count``): a default is no choice the user made."""
    flags = {param.name: param.opts[0] for param in ctx.command.params}
    sources = {name: ctx.get_parameter_source(name) for name in names}
    return [flags[n] for n, s in sources.items() if s is not None and s.name == "COMMANDLINE"]


@contextmanager
def _data_progress(quiet: bool) -> Iterator["DataNotices"]:
    """What the data layer reports to, on stderr: a download bar, stopped however the
    block ends, or with ``quiet`` its notices alone."""
    from mlp_cli.render import DataNotices, DownloadBar

    if quiet:
        yield DataNotices(err_console)
        return
    bar = DownloadBar(err_console)
    try:
        yield bar
    finally:
        bar.stop()


def _load_training_data(cfg: "Config", quiet: bool) -> "Splits":
    from mlp_cli.data import prepare_data

    with _data_progress(quiet) as bar:
        return prepare_data(cfg, progressbar=bar)


# The flags every trainer has, each a shortcut for one --set key (same parsing and checks).
SHORTCUTS = {
    "epochs": "training.epochs",
    "lr": "optimizer.lr",
    "batch_size": "training.batch_size",
    "seed": "training.seed",
    "layers": "model.layers",
}
_SHORTCUT_PANEL = "Shortcuts for --set (applied after it)"


def _shortcut(flag: str, metavar: str) -> Any:
    key = SHORTCUTS[flag.removeprefix("--").replace("-", "_")]
    return typer.Option(
        flag,
        metavar=metavar,
        help=f"Same as --set {key}={metavar}.",
        rich_help_panel=_SHORTCUT_PANEL,
    )


@app.command()
def train(
    ctx: typer.Context,
    config: ConfigArg = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
    epochs: Annotated[str | None, _shortcut("--epochs", "N")] = None,
    lr: Annotated[str | None, _shortcut("--lr", "RATE")] = None,
    batch_size: Annotated[str | None, _shortcut("--batch-size", "N")] = None,
    seed: Annotated[str | None, _shortcut("--seed", "N")] = None,
    layers: Annotated[str | None, _shortcut("--layers", "SIZES")] = None,
    out: Annotated[
        Path | None, _out("Run directory (default: <output.dir>/<name>).", "DIR")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Continue the run in this directory from its checkpoint."),
    ] = None,
    threads: Annotated[
        str | None,
        typer.Option(
            metavar="N|auto",
            help="Threads for BLAS and the update: N (at most the cores) or auto, the default "
            "(training.threads).",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only the summary (with --json, not even that)."),
    ] = False,
    json_: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per epoch on stdout, nothing else."),
    ] = False,
) -> None:
    """Train a network from a YAML config; writes a run directory with the model."""
    from mlp_cli import train as training
    from mlp_cli.config import Override, load_config
    from mlp_cli.render import JsonLines, Notices, TrainDisplay, print_train_summary

    # The shortcut flags are read by name, so that SHORTCUTS alone lists them.
    overrides = list(set_ or []) + [
        Override(f"{key}={value}", f"--{name.replace('_', '-')} {value}")
        for name, key in SHORTCUTS.items()
        if (value := ctx.params[name]) is not None
    ]
    thread_setting = _threads_option(threads)  # before a run's lock or checkpoint is taken
    if thread_setting is not None:
        # The run's config.yaml must name the threads used, since --resume reads them there.
        overrides.append(Override(f"training.threads={thread_setting}", f"--threads {threads}"))
    saved = None
    if resume is not None:
        _refuse_with_resume(ctx, "config", "out")
        from mlp_cli.checkpoint import through_latest

        resume = through_latest(resume, "Give the run directory to resume.")
        cfg = training.resume_config(resume, overrides)
        training.check_resume_destination(resume)
        # Held to the end of the command, from before the checkpoint is read: no other
        # process trains the run meanwhile (the trainer takes it too, see lock_run).
        ctx.with_resource(training.lock_run(resume))
        saved = training.load_checkpoint(resume)
    else:
        cfg = training.name_for_overrides(load_config(config, overrides), overrides)
        training.check_run_destination(cfg, out)  # before minutes of loading and training
    earlier = training.threads_so_far(saved) if saved is not None else None
    choice = _choose_threads(thread_setting, cfg, earlier)
    if choice.capped and (quiet or json_):
        err_console.print(plain(f"threads: {choice.threads} ({choice.reason})"))
    with limit_blas(choice.threads):
        data = _load_training_data(cfg, quiet or json_)
        trainer = (
            training.resume(resume, cfg, data, saved)
            if resume is not None
            else training.start(cfg, data, out)
        )
        for warning in trainer.warnings:
            _say(WARNING, plain(warning), err=True)
        display: training.Callbacks
        if json_:
            display = JsonLines(err_console)
        elif quiet:
            display = Notices(err_console)
        else:
            display = TrainDisplay(console, cfg, choice)
        with _stop_on_sigint() as stop_signal:
            try:
                result = trainer.run(display, lambda: stop_signal() is not None)
            except (CheckpointError, OutputError) as exc:
                if trainer.ended is not None:  # the run's end is saved; the error says the rest
                    raise
                # A file of the run could not be written (a full disk): the command run again
                # would start a new run, where this one goes on from its last checkpoint.
                where = trainer.saved_where() if any(trainer.saved_at) else "before the first epoch"
                # The write error's advice ends "then run the command again", which would
                # start that new run: once the cause is put right, the run is resumed instead.
                text, again = str(exc).rstrip(), "then run the command again."
                if text.endswith(again):
                    text = text.removesuffix(again) + "then resume the run."
                raise type(exc)(
                    f"{text} Training stopped; the run resumes from its checkpoint "
                    f"{where} with: {command('mlp train --resume', trainer.run_dir)}"
                ) from None
            except StdoutError as exc:
                # The checkpoint of the last finished epoch (or of the start, or the one
                # resumed from) is in the run.
                done = trainer.state.epoch
                where = trainer.saved_where() if any(trainer.saved_at) else "before the first epoch"
                exc.advice = (
                    f"Training stopped; the run resumes from its checkpoint {where} with: "
                    f"{command('mlp train --resume', trainer.run_dir)}"
                    if trainer.ended is None
                    else f"Training had ended ({trainer.ended.replace('_', ' ')} after epoch "
                    f"{done}) and the run is saved; draw its curves with: "
                    f"{command('mlp plot', trainer.run_dir)}"
                )
                _silence_stdout()  # closing the display below writes there again
                raise
            finally:
                if isinstance(display, TrainDisplay):
                    display.close()
    if not json_:
        print_train_summary(console, result)
    if result.status == "interrupted":
        resume_with = command("mlp train --resume", result.run_dir)
        _say("training interrupted; checkpoint saved. Resume with: ", resume_with, err=True)
        raise typer.Exit(128 + (stop_signal() or signal.SIGINT))


# -- sweep -----------------------------------------------------------------------------------


_SWEEP_ACTIONS = ("plan", "show")


def _listed(flags: list[str]) -> str:
    """``flags`` in a sentence: "--a", "--a and --b", "--a, --b and --c"."""
    return " and ".join([", ".join(flags[:-1]), flags[-1]] if len(flags) > 1 else flags)


# The options only running a sweep uses, by action: what that action does instead, and
# those of them it takes no notice of.
_RUN_OPTIONS = ("workers", "cpus_per_trial", "engine", "address", "storage", "quiet")
_NOT_FOR = {
    "plan": ("lists the trials without running them", _RUN_OPTIONS),
    "show": ("prints the table of a sweep that ran", (*_RUN_OPTIONS, "out")),
}


@app.command()
def sweep(
    ctx: typer.Context,
    target: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[plan|show] FILE|DIR",
            help="A sweep file to run, or the name of a shipped sweep (depth-width,"
            " 400-25-10-recipe); plan FILE: list its trials (takes --out and --json only);"
            " show DIR: a sweep's table (takes --json only).",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Continue the sweep in this folder."),
    ] = None,
    engine: Annotated[
        Literal["local", "ray"],
        typer.Option(
            help="local: worker processes on this machine; ray: Ray Tune trials on a Ray "
            "cluster (pip install 'ray\\[tune]>=2.41', or '.\\[ray]' in a clone of mlp)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="The Ray cluster to run on (--engine ray; default: a private Ray on this "
            "machine).",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            metavar="DIR|URI",
            callback=_home_expanded,
            help="Where Ray keeps the trials' checkpoints (--engine ray; default: a new "
            "ray-XXXXXXXX/ in the sweep folder). A cluster of several machines needs a folder "
            "they all share, or a URI such as s3://bucket/path.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        _count(
            "Trials at once, with either engine (default: usable cores / --cpus-per-trial; on"
            " Ray, as many as its CPUs fit).",
            256,
        ),
    ] = None,
    cpus_per_trial: Annotated[
        int | None, _count("CPUs (threads) per trial \\[default: 1].", 256)
    ] = None,
    out: Annotated[Path | None, _out("Sweep folder (default: <output.dir>/<name>).", "DIR")] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print only the results (with --json, as JSON only)."),
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="The ranked trials as JSON on stdout, nothing else.")
    ] = False,
) -> None:
    """Run a hyperparameter sweep: mlp sweep FILE, plan FILE, show DIR or --resume DIR.

    FILE may name a shipped sweep: mlp sweep plan depth-width."""
    from mlp_cli import sweep as sweeps
    from mlp_cli.config import config_from_dict
    from mlp_cli.limits import counted
    from mlp_cli.outputs import check_folder
    from mlp_cli.render import plan_table, sweep_reasons, sweep_table
    from mlp_cli.threads import usable_cores

    args = list(target or [])
    if "" in args:  # the arguments are text, not Paths, for the actions: refused here
        raise typer.BadParameter(EMPTY_PATH, ctx=ctx, param_hint="'FILE|DIR'")
    action = args[0] if len(args) == 2 and args[0] in _SWEEP_ACTIONS else None
    lone_action = len(args) == 1 and args[0] in _SWEEP_ACTIONS and not Path(args[0]).exists()
    if len(args) != (0 if resume is not None else 2 if action else 1) or lone_action:
        raise UsageError(
            "expected one of: mlp sweep FILE.yaml, mlp sweep plan FILE.yaml, mlp sweep show DIR,"
            " mlp sweep --resume DIR"
        )
    if action is not None and (unused := _given(ctx, *_NOT_FOR[action][1])):
        raise UsageError(
            f"{_listed(unused)} cannot be combined with `mlp sweep {action}`, which"
            f" {_NOT_FOR[action][0]}: {'they go' if len(unused) > 1 else 'it goes'} with"
            f" running a sweep. Drop {_listed(unused)}."
        )
    # Before a resumed sweep's folder is locked or its trials read.
    if engine != "ray" and (address is not None or storage is not None):
        raise UsageError("--address and --storage go with --engine ray")
    if action == "show":
        _print_sweep(sweeps.Sweep.load(args[1]), json_)
        return
    if resume is not None:
        if out is not None:
            raise UsageError(
                "--resume cannot be combined with --out: a resumed sweep goes on in its own"
                " folder. Drop --out, or start a new sweep from its file without --resume."
            )
        run = sweeps.Sweep.load(resume)
        # Before the lock, whose file a folder that takes none would refuse less clearly.
        check_folder(run.dir, "sweep folder")
        # Held to the end of the command, from just after the state is read: a second
        # `mlp sweep --resume` of it stops here.
        ctx.with_resource(sweeps.lock(run.dir))
        sweeps.check_trial_runs(run)
        if cpus_per_trial is not None and cpus_per_trial != run.cpus_per_trial:
            raise UsageError(
                f"the sweep in '{shown(resume)}' runs its trials on {run.cpus_per_trial} threads"
                " each; --resume keeps that (other threads would give other bits), so leave"
                " out --cpus-per-trial"
            )
    else:
        run = sweeps.plan(args[-1], out=out, cpus_per_trial=cpus_per_trial or 1)
        if action == "plan":
            if json_:
                typer.echo(json_text([{"trial": t.id, **t.params} for t in run.trials], indent=1))
            else:
                console.print(plan_table(run))
            return
        sweeps.check_new_sweep(run)
    if engine == "ray":
        from mlp_cli.sweep_ray import check_ready, run_ray

        check_ready(address)
    run.engine = engine
    sweeps.check_outputs(run.dir)
    if engine == "local" and run.cpus_per_trial > (cores := usable_cores()):
        raise UsageError(
            f"--cpus-per-trial {run.cpus_per_trial} is more than the {cores} usable cores of"
            " this machine; a trial's threads share its cores"
        )
    choice = workers or sweeps.default_workers(run.cpus_per_trial)
    runner = (
        functools.partial(run_ray, address=address, storage=storage, workers=workers)
        if engine == "ray"
        else functools.partial(sweeps.run_local, workers=choice)
    )
    if not (quiet or json_):
        at_once = f"{choice} at a time" if engine == "local" or workers else "on Ray"
        if engine == "ray" and address is not None:
            at_once = f"on the Ray cluster at {address}"
        _say(
            f"sweep {run.name}: {counted(len(run.trials), 'trial')}, ",
            plain(at_once),
            f", {counted(run.cpus_per_trial, 'thread')} each, into ",
            plain_name(run.dir),
        )
    if engine == "local" or address is None:  # once here, not in every trial at once
        from mlp_cli.data import fetch_missing

        mirror = config_from_dict(run.trials[0].config, trained=True).data.mirror
        with _data_progress(quiet or json_) as bar:
            fetch_missing(mirror=mirror, progressbar=bar)
    run.dir.mkdir(parents=True, exist_ok=True)
    if resume is None:
        ctx.with_resource(sweeps.lock(run.dir))
    run.save(claim=resume is None)
    live = None
    if not (quiet or json_):
        from rich.live import Live

        live = Live(
            sweep_table(run, width=console.width, height=console.height),
            console=console,
            auto_refresh=False,
            transient=True,
        )
        live.start()

    drawn = {"at": 0.0}

    def changed() -> None:
        if live is not None and time.monotonic() - drawn["at"] > 0.1:  # at most 10 a second
            live.update(sweep_table(run, width=console.width, height=console.height), refresh=True)
            drawn["at"] = time.monotonic()

    try:
        with _stop_on_sigint() as stop_signal:
            finished = runner(run, on_change=changed, should_stop=lambda: stop_signal() is not None)
    finally:
        if live is not None:
            live.stop()
    if not finished:
        _say(
            "sweep interrupted; running trials saved checkpoints. Resume with: ",
            sweeps.resume_hint(run),
            err=True,
        )
        raise typer.Exit(128 + (stop_signal() or signal.SIGINT))
    # Interrupted, or never started: a worker process that died stops the trials after it too.
    if run.unfinished():
        for line in sweep_reasons(run):
            err_console.print(line)
        _say("some trials did not finish; continue them with: ", sweeps.resume_hint(run), err=True)
        raise typer.Exit(1)
    sweeps.finish(run)
    _print_sweep(run, json_)
    best = run.best_trial()
    if best is None:
        raise MLPError(f"no trial of the sweep gave a {run.metric}; see the reasons above")
    best_dir, link = run.run_dir(best), run.dir / sweeps.BEST
    if link.resolve() != best_dir.resolve():
        no_link = " has no model.npz, so no 'best' link was made"
        _say(WARNING, "the best trial's folder ", plain_name(best_dir), no_link, err=True)
    elif not json_:
        _say("best: ", plain_name(best_dir), " (linked as ", plain_name(link), ")")
    if not json_:
        results, picture = run.dir / sweeps.RESULTS_FILE, run.dir / sweeps.PICTURE_FILE
        _say("results: ", plain_name(results), ", ", plain_name(picture))


def _print_sweep(run: "Sweep", json_: bool) -> None:
    """A sweep's trials, best first: as JSON on stdout, or as a table there and why trials
    ended on stderr."""
    from mlp_cli.render import sweep_reasons, sweep_table
    from mlp_cli.sweep import summary

    if json_:
        typer.echo(json_text(summary(run), indent=1))
        return
    console.print(sweep_table(run, ranked=True, width=console.width))
    for line in sweep_reasons(run):
        err_console.print(line)


# -- gradcheck -------------------------------------------------------------------------------


@app.command()
def gradcheck(
    config: ConfigArg = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
    batch: Annotated[int, _count("Examples in the random batch.")] = 8,
    entries: Annotated[int, _count("Entries checked per parameter array at most.")] = 200,
    seed: Annotated[
        int, typer.Option(min=0, metavar="N", help="Seed for the random network and batch.")
    ] = 0,
) -> None:
    """Check backpropagation against central differences (float64) for a config's network."""
    from rich.table import Table

    from mlp_cli.config import load_config
    from mlp_cli.gradcheck import TOLERANCE
    from mlp_cli.gradcheck import gradcheck as check
    from mlp_cli.limits import layers_text

    cfg = load_config(config, list(set_ or []))
    results = check(
        cfg.model.layers,
        cfg.model.hidden_activation,
        cfg.model.output_activation,
        cfg.loss,
        l1=cfg.regularization.l1,
        l2=cfg.regularization.l2,
        dropout=cfg.model.dropout_rates,
        batch=batch,
        max_entries=entries,
        seed=seed,
    )
    dropped = ", dropout through fixed masks" if any(cfg.model.dropout_rates) else ""
    table = Table(title=f"gradient check: {layers_text(cfg.model.layers)}, float64{dropped}")
    for column in ("array", "checked", "relative error", "result"):
        table.add_column(column, justify="right" if column != "array" else "left")
    for r in results:
        verdict = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
        table.add_row(r.name, f"{r.checked:,}/{r.size:,}", f"{r.rel_error:.2e}", verdict)
    console.print(table)
    console.print(f"tolerance: relative error < {TOLERANCE:g}")
    if kinks := sum(r.kinks for r in results):
        console.print(
            f"not compared: {kinks} sampled {'entry' if kinks == 1 else 'entries'} whose "
            "nudges moved a ReLU's input or an L1-penalised weight across 0, where the "
            "derivative jumps"
        )
    if not all(r.passed for r in results):
        raise typer.Exit(1)


# -- evaluate / predict ----------------------------------------------------------------------


def _load_model(model: Path | None) -> tuple[Path, Any]:
    from mlp_cli import checkpoint

    path = checkpoint.find_model(model)
    return path, checkpoint.load(path)


def _model_json(path: Path, saved: Any) -> dict[str, Any]:
    """Which model answered, for the --json outputs: its file, format version and the mlp
    that wrote it, and the mlp that is answering."""
    return {
        "model": {
            "path": path,
            "format_version": saved.meta.format_version,
            "package_version": saved.meta.package_version,
        },
        "mlp_version": __version__,
    }


@app.command()
def evaluate(
    ctx: typer.Context,
    model: ModelOpt = None,
    split: Annotated[
        Split, typer.Option(help="Which images: test, val (held out in training) or train.")
    ] = "test",
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    misclassified: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Write the worst mistakes as PNGs (and a gallery) into this folder."
        ),
    ] = None,
    count: Annotated[int, _count("How many mistakes --misclassified writes.")] = 50,
    plot: Annotated[
        Path | None,
        typer.Option(
            metavar=FILE, help="Write a confusion-matrix heatmap here (.png, .svg or .pdf)."
        ),
    ] = None,
) -> None:
    """Score a trained model on an MNIST split: accuracy, loss, per-class metrics, confusions."""
    from mlp_cli.evaluate import check_plot_apart, split_images, split_rows, write_mistakes
    from mlp_cli.evaluate import evaluate as run_evaluation
    from mlp_cli.outputs import check_folder, check_picture
    from mlp_cli.render import print_evaluation

    if misclassified is None and _given(ctx, "count"):
        raise UsageError(
            "--count goes with --misclassified: it is how many mistakes that folder gets. "
            "Add --misclassified DIR, or drop --count."
        )
    if plot is not None:
        check_picture(plot, "confusion heatmap")
    if misclassified is not None:
        check_folder(misclassified, "folder for --misclassified")
        if plot is not None:
            check_plot_apart(misclassified, plot)
    path, saved = _load_model(model)
    with _data_progress(quiet=True) as notices:
        images, labels = split_images(saved, split, progressbar=notices)
    result = run_evaluation(saved, images, labels, split)
    if misclassified is not None:
        from mlp_cli.limits import MNIST_TRAINING_IMAGES

        # Pictures are named by the image's index in its MNIST file, not in the split.
        total = len(labels) if split == "test" else MNIST_TRAINING_IMAGES
        written = write_mistakes(
            result, images, misclassified, count, split_rows(saved, split, total)
        )
    if plot is not None:
        from mlp_cli.checkpoint import MODEL_FILE
        from mlp_cli.limits import percent
        from mlp_cli.viz import plot_confusion

        # a run's model by its folder, through a link such as runs/latest (the picture
        # outlives the link); any other model file by its own name
        run = path.parent.resolve().name if path.name == MODEL_FILE else path.name
        plot_confusion(
            result.confusion,
            plot,
            class_names=result.class_names,
            title=f"{run}: {split} split, accuracy {percent(result.accuracy)}",
        )
    if json_:
        # The pictures' paths, which the human output prints, in fields of their own.
        report = {**_model_json(path, saved), **result.to_json()}
        if misclassified is not None:
            report["misclassified"] = written
        if plot is not None:
            report["plot"] = plot
        typer.echo(json_text(report))
        return
    print_evaluation(console, result, path)
    if misclassified is not None:
        _say("worst mistakes written to ", plain_name(f"{misclassified}/"))
    if plot is not None:
        _say("confusion heatmap written to ", plain_name(plot))


@app.command()
def predict(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="IMAGE",
            help="Image files, folders or glob patterns.",
            callback=_no_empty_path,
        ),
    ],
    model: ModelOpt = None,
    json_: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: the model, predictions and failures (bytes of a file "
            "name that are not UTF-8 written as \\xNN).",
        ),
    ] = False,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Draw the 28x28 input the network sees, each image in detail as with --verbose"
            " (not with --json).",
        ),
    ] = False,
    save_input: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Write each 28x28 network input as a PNG here."),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Images are already MNIST-style: skip preprocessing."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Every image in detail, also when there are more than 3 (not with --json).",
        ),
    ] = False,
) -> None:
    """Predict the digit in each image (PNG, JPEG, BMP, GIF, TIFF, WebP).

    Up to 3 images are shown in detail (top 3 and a bar per digit); more are a table, one
    row per image, and a summary.
    """
    from mlp_cli.predict import InputWriter, image_files, predict_batches

    if json_ and (drawn := _given(ctx, "show", "verbose")):
        raise UsageError(
            f"{_listed(drawn)} cannot be combined with --json: the JSON object is all that is"
            f" printed. Drop {_listed(drawn)}, or --json to see the images in detail."
        )
    if save_input is not None:
        from mlp_cli.outputs import check_folder

        check_folder(save_input, "folder for --save-input")
    started = time.perf_counter()
    path, saved = _load_model(model)
    files, failures = image_files(paths)
    writer = InputWriter(save_input, files) if save_input is not None else None
    names = list(saved.meta.class_names)
    # Each batch is printed (and its inputs written) before the next is read.
    batches = (
        (predictions, batch_failures, writer.write(predictions) if writer else [])
        for predictions, batch_failures in predict_batches(saved, files, raw=raw)
    )
    if json_:
        _print_predictions_json(path, saved, batches, failures)
    else:
        from mlp_cli import render

        detailed = verbose or show
        side = saved.meta.preprocessing.input_size
        held: list[Prediction] = []  # the first few, until they are known to be more than a few
        table = None
        saved_as: list[tuple[str, Path]] = []
        predicted = 0
        for predictions, batch_failures, written in batches:
            failures += batch_failures
            saved_as += [(p.file, file) for p, file in zip(predictions, written, strict=False)]
            predicted += len(predictions)
            held += predictions
            if not detailed and table is None and len(held) > render.DETAILED_MAX:
                table = render.PredictionRows(console, names, files)
            if table is not None:
                table.print(held)
                held = []
            elif detailed:
                for p in held:
                    render.print_prediction(console, p, names, show, side)
                held = []
        for p in held:  # no more than DETAILED_MAX in all
            render.print_prediction(console, p, names, show, side)
        for file, written_as in saved_as:
            _say("network input of ", plain_name(file), " saved as ", plain_name(written_as))
        if predicted + len(failures) > 1:
            seconds = time.perf_counter() - started
            console.print(render.prediction_summary(predicted, len(failures), seconds))
    for failure in failures:
        _say(ERROR, plain(failure.message), err=True, soft_wrap=False)
    if failures:
        raise typer.Exit(1)


def _print_predictions_json(
    path: Path,
    saved: "SavedModel",
    batches: "Iterable[tuple[list[Prediction], list[Failure], list[Path]]]",
    failures: "list[Failure]",
) -> None:
    """One JSON object, {model..., "predictions": [...], "failures": [...]}, written a batch
    of predictions at a time; ``failures`` gets the failures of every batch too.

    An error that stops a later batch (a full --save-input folder, a model whose outputs
    are not finite, Ctrl-C) still leaves one valid object on stdout: it is closed with the
    predictions and failures so far before the error goes on to be reported."""
    names = list(saved.meta.class_names)
    opening = json_text({**_model_json(path, saved), "predictions": []})[: -len("]}")]
    any_rows = False
    chunk, sent = "", [0]  # the batch's text and how many of its characters are out
    try:
        for predictions, batch_failures, written in batches:
            failures += batch_failures
            rows = [p.to_json(names) for p in predictions]
            for row, file in zip(rows, written, strict=False):
                row["input_saved_as"] = file
            text = ", ".join(json_text(row) for row in rows)
            if any_rows and rows:
                text = ", " + text
            any_rows = any_rows or bool(rows)
            chunk, sent[0] = opening + text, 0
            _write_counted(chunk, sent)
            opening = ""  # written with the first batch, once its forward pass has worked
    except BaseException as exc:
        # Half an object is out: the rest of the batch cut short, then the end.
        if (not opening or sent[0]) and not isinstance(exc, StdoutError):
            typer.echo(f"{chunk[sent[0] :]}], {_failures_json(failures)}")
        raise
    typer.echo(f"{opening}], {_failures_json(failures)}")


def _write_counted(text: str, sent: list[int]) -> None:
    """Write ``text`` (ASCII, as `json_text` makes it) to standard output, counting in
    ``sent[0]`` the characters written so far, so that a stop signal ending it leaves the
    caller knowing exactly what is out.

    One write of a large text to a pipe that is full blocks, and a signal then cuts it
    after an unknown part. So this waits for room with the signals let through, and writes
    at most PIPE_BUF bytes, which a pipe takes whole or not at all, with them held."""
    raw = getattr(getattr(sys.stdout, "buffer", None), "raw", None)
    encoding = sys.stdout.encoding or "utf-8"
    data = text.encode(encoding, "backslashreplace")
    # Else no descriptor of ours (a test's capture) or no signal masks: written as before.
    if not isinstance(raw, _StdoutFile) or not hasattr(signal, "pthread_sigmask"):
        typer.echo(text, nl=False)
        sent[0] = len(text)
        return
    import select

    sys.stdout.flush()
    put: Callable[[int], int]
    if len(data) == len(text):  # a byte a character: the bytes, PIPE_BUF of them at a time
        size = select.PIPE_BUF

        def put(start: int) -> int:
            return raw.write(data[start : start + size]) or 0

    else:
        # An encoding of several bytes a character (UTF-16) goes through the text layer,
        # which writes its byte-order mark once, in pieces of characters that encode (the
        # mark too) to at most PIPE_BUF bytes.
        most = max(len(c.encode(encoding, "backslashreplace")) for c in set(text))
        size = max(1, select.PIPE_BUF // most - 1)

        def put(start: int) -> int:
            piece = text[start : start + size]
            sys.stdout.write(piece)
            sys.stdout.flush()
            return len(piece)

    while sent[0] < len(text):
        select.select([], [raw.fileno()], [])  # a stop signal is raised here, if it comes
        with _stop_signals_held():
            sent[0] += put(sent[0])


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold the stop signals inside the block (one that comes waits, pending), and put the
    mask back as it was however the block ends: also when a signal that came just before
    is raised as the mask is being set, which would otherwise leave them held for good."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _failures_json(failures: "list[Failure]") -> str:
    """The end of predict's JSON object: its failures and the closing brace."""
    return json_text({"failures": [f.to_json() for f in failures]})[1:]


# -- export ----------------------------------------------------------------------------------


@app.command()
def export(
    out: Annotated[Path, _out("File to write, e.g. model.onnx.", FILE)],
    model: ModelOpt = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="Output format: onnx.")] = "onnx",
    preprocessing: Annotated[
        bool,
        typer.Option(
            help="Put the model's input transform (28->20 reduction, standardisation) in the "
            "graph, so it takes MNIST-form pixels in [0, 1]."
        ),
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Run the file on the MNIST test set and compare with our model."
        ),
    ] = False,
) -> None:
    """Export a trained model to ONNX, to run it outside Python or without mlp."""
    from mlp_cli import checkpoint
    from mlp_cli import export as exporting
    from mlp_cli.evaluate import check_scorable, split_images

    exporting.check_format(format_)
    path = checkpoint.find_model(model)
    exporting.check_out(out, force=force, model_path=path)
    saved = checkpoint.load(path)
    if verify:
        check_scorable(saved)
    exporting.check_installed()  # before the test set is read, or downloaded
    # The test set before the file is written: a model that cannot be scored on it is
    # refused, with nothing written.
    images, labels = split_images(saved, "test") if verify else (None, None)
    written = exporting.export(saved, out, force=force, preprocessing=preprocessing)
    size = f"{written.stat().st_size:,} bytes"
    version = f"ONNX opset {exporting.OPSET}, IR version {exporting.IR_VERSION}"
    _say("exported ", plain_name(path), " to ", plain_name(written), f" ({version}, {size})")
    if images is None or labels is None:
        return
    check = exporting.verify(written, saved, images, labels, preprocessing=preprocessing)
    console.print(
        f"verified with {check.runtime} on the {check.n:,} MNIST test images: largest "
        f"probability difference {check.max_difference:.2e}, labels agree "
        f"{check.labels_agree:,}/{check.n:,}, accuracy {100 * check.accuracy_onnx:.2f}% "
        f"(ours {100 * check.accuracy_ours:.2f}%)",
        highlight=False,
    )
    if not check.passed:
        raise ExportError(
            f"the exported file differs from the model by more than {exporting.TOLERANCE:g} "
            f"in a probability or in some labels; it was written to {shown(written)} but should "
            "not be used as is."
        )


# -- looking inside ----------------------------------------------------------------------------


@app.command()
def inspect(model: ModelOpt = None) -> None:
    """Summarise a saved model: layers, parameters, preprocessing, training, data hashes."""
    from mlp_cli.render import print_model_summary

    _, saved = _load_model(model)
    print_model_summary(console, saved)


@show_app.command("hidden")
def show_hidden(
    model: ModelOpt = None,
    out: Annotated[
        Path | None, _out("PNG to write (default: hidden.png in the model's run folder).", FILE)
    ] = None,
    layer: Annotated[
        int,
        _count(
            "Which hidden layer (1 = first); the one after the last hidden layer draws the output "
            "units through the weights below them (W2·W1 for one hidden layer), one per class."
        ),
    ] = 1,
    terminal: Annotated[
        bool,
        typer.Option(help="Also draw the units in the terminal (up to 36 units)."),
    ] = True,
) -> None:
    """Draw each hidden unit's incoming weights as a picture (PNG, and in the terminal)."""
    from mlp_cli.outputs import IMAGE_SUFFIXES, check_picture
    from mlp_cli.render import render_hidden_terminal
    from mlp_cli.viz import MAX_DRAWN_UNITS, hidden_png_path, save_hidden_png, unit_patterns

    path, saved = _load_model(model)
    target = out or hidden_png_path(path, layer)
    try:
        check_picture(target, "picture of hidden units", IMAGE_SUFFIXES)
    except UsageError as exc:
        if out is not None:
            raise
        raise UsageError(f"{exc}. Draw it elsewhere with --out FILE.png") from None
    side = saved.meta.preprocessing.input_size
    patterns, note = unit_patterns(saved.weights, layer)
    save_hidden_png(patterns, side, target, note)
    if terminal:
        console.print(render_hidden_terminal(patterns, side, width=min(console.width, 120)))
    console.print(note, highlight=False)
    drawn = min(len(patterns), MAX_DRAWN_UNITS)
    of = f" of {len(patterns):,}" if drawn < len(patterns) else ""
    _say(f"{drawn:,}{of} unit{'s' * (len(patterns) != 1)} drawn to ", plain_name(target))


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            metavar="FILE|DIR",
            help="A .npz model or a run directory (default: the newest run of --runs, "
            "runs/latest unless --runs says otherwise).",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(metavar="ADDRESS", help="Address to listen on (loopback only by default)."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="N", help="Port to listen on (0: a free one).")
    ] = 8000,
    runs: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder whose runs the page can switch between.")
    ] = Path("runs"),
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in the web browser.")
    ] = False,
    workers: Annotated[
        int | None,
        _count("Processes answering requests (Linux; default: one per core, at most 4).", 64),
    ] = None,
) -> None:
    """Serve a web page where you draw a digit and watch the network answer (Ctrl-C stops)."""
    from mlp_cli import serve as serving

    serving.check_host(host)  # before the model is loaded
    server = serving.Server(
        serving.Models(model, runs),
        host,
        port,
        log=lambda message: _say(plain(message), err=True),
    )
    with server:
        try:  # from the line that says Ctrl-C stops, it does, even before serving begins
            _say(
                "serving ",
                plain(server.models.default.name),
                " at ",
                (server.url, "bold"),
                " (Ctrl-C stops)",
            )
            if not serving.is_loopback(host):
                reachable = (
                    ": the page and its API are reachable from the network, without a password"
                )
                _say(WARNING, "listening on ", plain(host), reachable, err=True)
            if open_browser:
                import webbrowser

                webbrowser.open(server.url)
            serving.serve_forever(server, workers or serving.default_workers())
        except KeyboardInterrupt:
            console.print("stopped")


@app.command()
def plot(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="A run directory made by `mlp train` (or its metrics.jsonl)."
        ),
    ] = Path("runs/latest"),
    out: Annotated[
        Path | None,
        _out("Picture to write, .png, .svg or .pdf (default: RUN_DIR/curves.png).", FILE),
    ] = None,
) -> None:
    """Draw learning curves (loss, accuracy, learning rate) of a training run."""
    from mlp_cli import train as training
    from mlp_cli.outputs import check_picture
    from mlp_cli.viz import curve_series, plot_curves

    metrics = training.find_metrics(run_dir)
    run_dir = metrics.parent
    curves = run_dir / training.CURVES_FILE
    replaces = training.legacy_curves(curves) if out is None else ()
    target = check_picture(out or curves, "learning curves", also=replaces)
    # Into the run folder only while no mlp trains it: the trainer draws curves.png itself
    # when it ends, and a picture of fewer epochs must not replace that one.
    elsewhere = f"; or draw the curves so far elsewhere: {command('mlp plot', run_dir)} --out FILE"
    into_run = os.path.realpath(target.parent) == os.path.realpath(run_dir)
    with training.lock_run(run_dir, elsewhere) if into_run else contextlib.nullcontext():
        records = training.read_metrics(metrics)
        cfg = training.run_config(run_dir)
        try:
            curve_series(records)
        except UsageError as exc:
            # Records no run writes are a damaged file, which fails at run time as a line of
            # it that is not JSON does (read_metrics); checked apart from the drawing, whose
            # own refusals (the picture's path, checked again as it is written) stay usage
            # errors about that path.
            raise DataError(f"The metrics file {shown(metrics)} cannot be plotted: {exc}") from None
        stopping = None if cfg is None else cfg.training.early_stopping
        plot_curves(
            records,
            target,
            title=run_dir.resolve().name,
            loss=None if cfg is None else cfg.loss,
            monitor=None if stopping is None else stopping.monitor,
            min_delta=0.0 if stopping is None else stopping.min_delta,
        )
    _say("learning curves written to ", plain_name(target))


# -- data ------------------------------------------------------------------------------------


@data_app.command("fetch")
def data_fetch(
    mirror: Annotated[
        str | None, typer.Option(metavar="URL", help="Base URL tried before the built-in mirrors.")
    ] = None,
) -> None:
    """Download MNIST (if not cached), verify it and cache it."""
    from mlp_cli import data

    with _data_progress(quiet=False) as bar:
        files = data.fetch_mnist(mirror=mirror, progressbar=bar, mirror_from="the --mirror option")
    _say("MNIST is ready in ", plain_name(data.data_dir()), f" ({len(files)} files verified)")


@data_app.command("import")
def data_import(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder with the four MNIST files.")
    ],
) -> None:
    """Install an offline copy of MNIST (.gz or raw IDX files), verified."""
    from mlp_cli import data
    from mlp_cli.render import DataNotices

    files = data.import_mnist(directory, notices=DataNotices(err_console))
    _say(f"imported {len(files)} files into ", plain_name(data.data_dir()))


@data_app.command("info")
def data_info(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show where MNIST is cached and whether each file is present and verified."""
    from rich.table import Table

    from mlp_cli import data

    info = data.mnist_info()
    if json_:
        # json_text escapes every non-ASCII and control character: the output is valid
        # JSON in any terminal encoding, and a folder's name cannot reach the terminal raw.
        typer.echo(json_text({"data_dir": data.data_dir(), "files": info}))
        return
    title = Text.assemble("MNIST cache: ", plain_name(data.data_dir()))
    table = Table("file", "present", "verified", "bytes", title=title)
    for row in info:
        table.add_row(
            str(row.get("name")),
            "yes" if row.get("present") else "[red]no[/]",
            "yes" if row.get("verified") else "[red]no[/]",
            f"{row['bytes']:,}" if row.get("bytes") is not None else "",  # 0 for an empty file
        )
    console.print(table)


@data_app.command("path")
def data_path() -> None:
    """Print the cache folder (MLP_DATA_DIR or the OS cache)."""
    from mlp_cli import data

    typer.echo(escape_controls(str(data.data_dir())))


# -- config ----------------------------------------------------------------------------------


@config_app.command("list")
def config_list() -> None:
    """List the shipped configs: name, expected MNIST test accuracy and what each trains."""
    from rich.table import Table

    from mlp_cli.shipped import shipped_configs

    table = Table(title="shipped configs", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("expected", justify="right", no_wrap=True)
    table.add_column("description")
    for shipped in shipped_configs():
        expected = f">= {shipped.expected:.1f}%" if shipped.expected is not None else "-"
        table.add_row(shipped.name, expected, shipped.description)
    console.print(table)
    _say("train one with: ", ("mlp train --config NAME", "bold"))
    _say("start your own from one with: ", ("mlp config show NAME > my.yaml", "bold"))


@config_app.command("show")
def config_show(
    file: Annotated[
        Path,
        typer.Argument(metavar="NAME|FILE", help="A shipped config's name or a YAML file."),
    ] = Path(DEFAULT_CONFIG),
    set_: SetOpt = None,
) -> None:
    """Print the resolved config (defaults filled in, overrides applied) under its header comment.

    `mlp config show NAME > my.yaml` starts a config of your own."""
    from mlp_cli.config import show_config

    overrides = list(set_ or [])
    text, header = show_config(file, overrides)
    for override in overrides:  # line by line: a quoted value may hold line breaks
        header += f"then overridden with --set {override}".splitlines()
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header)
    typer.echo(comments + ("\n" if comments else "") + text, nl=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the config's JSON schema (for editor completion and validation)."""
    from mlp_cli.config import config_schema as schema

    typer.echo(json_text(schema(), indent=2))


class StdoutError(OSError):
    """Standard output could not be written (a full disk, a closed pipe)."""

    advice = ""  # what became of the command's work, said after the error


class _StdoutFile(io.FileIO):
    """Standard output's file descriptor, whose write errors say they are stdout's."""

    # The errno of every write while standard output is unusable (closed when mlp started).
    failing: int | None = None

    def write(self, data: "Buffer", /) -> int:
        try:
            if self.failing is not None:
                raise OSError(self.failing, os.strerror(self.failing))
            return super().write(data)
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror) from None


def _tolerant_streams() -> None:
    """Characters the terminal's encoding lacks (a file name in Greek under
    ``PYTHONIOENCODING=ascii``) are printed as escapes, never an error; and stdout's write
    errors become `StdoutError`, told apart from those of files a command writes."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    stdout = sys.stdout
    if stdout is None:
        # Started with standard output closed (`mlp ... >&-`), the first file mlp opened
        # would get descriptor 1 and receive what is printed: /dev/null holds the number
        # instead, and writing to stdout fails as writing to a closed descriptor does.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != 1:
                os.dup2(devnull, 1)
                os.close(devnull)
            raw = _StdoutFile(1, "w", closefd=False)
            raw.failing = errno.EBADF
            sys.stdout = io.TextIOWrapper(
                io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace"
            )
        return
    try:
        fd = stdout.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by something without a file
        return
    stdout.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_StdoutFile(fd, "w", closefd=False)),
        encoding=stdout.encoding,
        errors="backslashreplace",
        line_buffering=bool(stdout.line_buffering),
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that what is still written or flushed there (Python's
    own last flush, a progress display closing) goes nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if isinstance(raw := getattr(sys.stdout.buffer, "raw", None), _StdoutFile):
            raw.failing = None  # what is still buffered goes to /dev/null


def main() -> None:
    """Console-script entry point."""
    _tolerant_streams()
    # SIGTERM and SIGHUP raise `Terminated` (Python's default is to die at once), so that
    # `finally` blocks run: temporary files and download staging folders are removed.
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT:
            take_over(signum, _raise_terminated)
    let_blas_workers_sleep()  # before any command loads NumPy
    # Pydantic looks for plugins in every installed package's metadata when it builds its
    # first validator; mlp's configs, model files and options are validated without any.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")
    # mlp draws only into files, on matplotlib Figures that use no backend (`viz`), so
    # MPLBACKEND has nothing to choose; matplotlib still refuses an unknown one at import.
    os.environ.pop("MPLBACKEND", None)
    try:
        try:
            app()
        finally:
            sys.stdout.flush()
    except StdoutError as exc:
        # One message on stderr, with the error's advice, and exit 1; a reader that left
        # (``| head``) needs no message.
        _silence_stdout()
        if exc.errno != errno.EPIPE:
            with contextlib.suppress(OSError, ValueError):
                problem = f"cannot write to standard output: {exc.strerror or exc}."
                _say(ERROR, " ".join(filter(None, [problem, exc.advice])), err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:  # before or after a command's own handling
        if _debugging():
            raise
        sys.exit(_exit_code(exc))
    finally:
        # The process ends here (Typer always exits), and Python's exit would run the cyclic
        # garbage collector over every object still alive (NumPy's, pydantic's, rich's):
        # frozen, they are left to the end of the process, which frees their memory anyway.
        gc.freeze()


if __name__ == "__main__":
    main()
