"""A TCP relay that records what the client sends: the tests' view of the wire.

`Tap(host, port)` listens on 127.0.0.1 and forwards every connection to host:port
byte for byte in both directions, keeping a copy of the client's bytes in `sent`. With
STARTTLS the copy after the upgrade is ciphertext, so a password found in it went out
in plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class Tap:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.sent = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Tap:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        upstream = asyncio.create_task(self._pipe(client_r, server_w, record=True))
        downstream = asyncio.create_task(self._pipe(server_r, client_w, record=False))
        self._pipes |= {upstream, downstream}
        for task in (upstream, downstream):
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self.sent += data
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
