"""Errors that are the user's to fix.

Entry points catch ``UserError`` and print its message as one line (no
traceback) before exiting non-zero; everything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input, bad configuration or a bad file: the message names the culprit."""


class ConfigError(UserError):
    """A configuration key, value or type is wrong."""


class ImageReadError(UserError):
    """An image file could not be read or decoded."""
