"""The one base of the errors inflab explains itself.

An :class:`InflabError`'s message is the learner's line: what went wrong, naming the key, flag,
file or AWS resource, and what to do about it. The engine shows it as the step's error as it is,
the command line prints it as ``inflab: error: …`` and exits with :attr:`InflabError.exit_code`
— never with a traceback. Anything else that escapes is a fault of ours (or of a library), which
the engine describes with :func:`inflab.engine.describe_exception`.

Each error also keeps the built-in base it had (``ValueError`` for bad input, ``RuntimeError``
for a failure), so ``except ValueError`` around a parser still catches a bad config.
"""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE = 1, 2


class InflabError(Exception):
    """An error with a message written for the learner (one line)."""

    exit_code = EXIT_FAILED


class InputError(InflabError):
    """Bad input — a config key, a flag, a file — found before anything was created: exit code 2."""

    exit_code = EXIT_USAGE
