"""The project's own error types. The command line turns these (and click's) into one line
and exit code 2; anything else is a bug and shows its traceback.

Each subclasses the builtin it stands for (``ValueError``, ``FileNotFoundError``...), so a
caller that catches the builtin keeps working.
"""

from __future__ import annotations


class TeachcacheError(Exception):
    """An error the user can fix (input, config, files); the message says what to do."""


class ConfigError(TeachcacheError, ValueError):
    """A config file, override or field value is wrong; the message names the key."""


class UnknownKind(ConfigError, KeyError):
    """A name that no registry holds (a teacher kind, a data set...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputMissing(TeachcacheError, FileNotFoundError):
    """A file or folder the user named (or a command needs) is not there."""


class NumericalError(TeachcacheError, FloatingPointError):
    """A model or loss produced NaN or inf; the message says where (and what to lower)."""


class ModelUnavailable(TeachcacheError, RuntimeError):
    """A model's weights cannot be loaded (not on disk, no hub offline); the message says what to give."""
