"""Errors that are the user's to fix: the CLI prints them without a traceback and exits 2."""

from algorithms.base import ConfigError, closest, float_hint


class UserError(Exception):
    """Bad input (a suite, a flag, a path). The message says what is wrong and what to do."""


USER_ERRORS = (UserError, ConfigError)

__all__ = ["USER_ERRORS", "UserError", "closest", "float_hint"]
