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


async def upload(
    conn: asyncssh.SSHClientConnection, files: dict[str, bytes], directory: str, mode: int | None = None
) -> None:
    """Write ``files`` into ``directory`` on the host (directory created if needed). With ``mode``
    (e.g. 0o600 for what the user's own file holds) each file has it before any byte is written,
    a file that was there before included."""
    await conn.run(f"mkdir -p {directory}", check=True)
    attrs = asyncssh.SFTPAttrs(permissions=mode) if mode is not None else asyncssh.SFTPAttrs()
    async with conn.start_sftp_client() as sftp:
        for name, data in files.items():
            async with sftp.open(f"{directory}/{name}", "wb", attrs) as f:
                if mode is not None:
                    await f.chmod(mode)  # an existing file keeps its mode through the truncating open
                await f.write(data)
