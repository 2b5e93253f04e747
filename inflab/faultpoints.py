"""Named points where a test can make the process die as a kill -9 would, at exactly that moment.

``INFLAB_FAULT_POINT=<name>`` in the environment makes :func:`hit` end the process at once
(exit 137, no clean-up, no buffered output flushed). Crash-recovery tests use it instead of
racing a kill against a sleep. Unset, :func:`hit` does nothing.
"""

from __future__ import annotations

import os

ENV = "INFLAB_FAULT_POINT"


def hit(name: str) -> None:
    if os.environ.get(ENV) == name:
        os._exit(137)
