"""Choose a session's host runtime."""

from __future__ import annotations

from pathlib import Path

from .base import HostRuntime


def for_session(sandbox: bool, home: Path) -> HostRuntime:
    if sandbox:
        from .sandbox import SandboxRuntime

        return SandboxRuntime(home)
    from .aws import AwsRuntime

    return AwsRuntime()
