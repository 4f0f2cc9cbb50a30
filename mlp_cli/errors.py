"""The one family of exceptions the library raises.

Library code never prints and never exits: it raises a subclass of `MLPError` whose
message is a complete, user-facing paragraph (what was wrong, where, what was expected).
The command line turns these into a message on stderr and an exit code; `exit_code`
says which (2 for usage and configuration mistakes, 1 for failures at run time).
"""


class MLPError(Exception):
    """Base class: a failure the user can act on, with a message written for them."""

    exit_code = 1


class UsageError(MLPError):
    """The user asked for something that cannot be done as asked (bad argument, bad path)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file or override is invalid."""


class DataError(MLPError):
    """A dataset could not be downloaded, verified, imported or parsed."""


class CheckpointError(MLPError):
    """A weights or checkpoint file is missing, corrupt or of an unknown format."""


class ImageError(MLPError):
    """An image given to `predict` could not be read or holds no digit."""


class TrainingError(MLPError):
    """Training could not go on (for example the loss became NaN or infinite)."""


class OutputError(MLPError):
    """A file could not be written where it was asked for (full disk, read-only, no access)."""


class ExportError(MLPError):
    """A model could not be exported (failed check, failed write)."""
