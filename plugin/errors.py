"""User-facing error types.

Every error a user can fix (a missing file, a wrong YAML key, bad point data) is raised as a
:class:`UserError` subclass whose message is one sentence naming the fix. ``tools/main.py`` prints
that sentence and exits with status 2 instead of showing a traceback.
"""


class UserError(Exception):
    """Base class of errors caused by the user's input or environment, not by a bug."""


class ConfigError(UserError, KeyError):
    """A config key, mode or registry ``NAME`` is wrong; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset path or file is missing; the message names the config key and how to prepare it."""


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A weights or checkpoint file is missing; the message names the config key to set."""


class BadInputError(UserError, ValueError):
    """Input data is unusable (empty or non-finite point cloud, wrong shape)."""


class BadCheckpointError(UserError, ValueError):
    """A checkpoint file is corrupt, foreign, or unsafe to unpickle; the message names the key to set."""


class TrainingDivergedError(UserError, FloatingPointError):
    """The training loss became NaN or infinite; ``ckpt_latest.pth`` still holds the last finished epoch."""
