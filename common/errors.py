"""Errors that are the user's to fix.

Entry points catch ``UserError`` and print its message as one line (no
traceback) before exiting non-zero; everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, bad configuration or a bad file: the message names the culprit."""


class ConfigError(UserError):
    """A configuration key, value or type is wrong."""


class ImageReadError(UserError):
    """An image file could not be read or decoded."""


class TrainingStopped(Exception):
    """A stop signal ended training after a checkpoint was written; the CLI exits with 128 + the signal number."""

    def __init__(self, signal_name: str, exit_code: int, step: int, checkpoint: object, resume: str | None = None):
        resume = resume or f"--resume {checkpoint}"
        super().__init__(
            f"stopped by {signal_name} after step {step}; checkpoint written to {checkpoint} (continue with {resume})"
        )
        self.signal_name, self.exit_code, self.step, self.checkpoint = signal_name, exit_code, step, checkpoint

    def resumed_by(self, command: str) -> TrainingStopped:
        """The same stop, with the command that continues it (a pipeline resumes its run folder)."""
        return TrainingStopped(self.signal_name, self.exit_code, self.step, self.checkpoint, command)
