"""Files on the host over SFTP, on an open asyncssh connection."""

from __future__ import annotations

import asyncssh


async def read_file(conn: asyncssh.SSHClientConnection, path: str) -> bytes | None:
    """A file from the host (a path relative to the login's home, or absolute), or None when it is not there."""
    async with conn.start_sftp_client() as sftp:
        try:
            async with sftp.open(path, "rb") as f:
                return await f.read()
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
            return None


async def upload(conn: asyncssh.SSHClientConnection, files: dict[str, bytes], directory: str) -> None:
    """Write ``files`` into ``directory`` on the host (directory created if needed)."""
    await conn.run(f"mkdir -p {directory}", check=True)
    async with conn.start_sftp_client() as sftp:
        for name, data in files.items():
            async with sftp.open(f"{directory}/{name}", "wb") as f:
                await f.write(data)
