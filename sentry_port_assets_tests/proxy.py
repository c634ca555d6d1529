"""A forward HTTP proxy on loopback that wants a password (`Proxy-Authorization: Basic`), as a corporate proxy does:
for the tests that show SENTRY_HOST and PORT_BASE_URL stay plain URLs while HTTP(S)_PROXY carries the proxy's own
password. It forwards plain-HTTP requests given in absolute form (`GET http://host:port/path HTTP/1.1`), which is how
an HTTP client talks to a proxy for an http:// URL."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "transfer-encoding", "host"}


class ForwardProxy:
    def __init__(self, user: str, password: str) -> None:
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.forwarded = 0
        self.refused = 0
        self.seen_authorization: list[str] = []  # what reached the service behind the proxy
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("proxy-authorization") != self.expected:
            self.refused += 1
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            self.forwarded += 1
            self.seen_authorization.append(headers.get("authorization", ""))
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.request(method, target, content=body,
                                              headers={k: v for k, v in headers.items() if k not in HOP_BY_HOP})
            out = [f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}"]
            out += [f"{k}: {v}" for k, v in answer.headers.items()
                    if k.lower() not in HOP_BY_HOP | {"content-length", "content-encoding"}]
            out += [f"Content-Length: {len(answer.content)}", "Connection: close", "", ""]
            writer.write("\r\n".join(out).encode("latin-1") + answer.content)
        await writer.drain()
        writer.close()

    @contextmanager
    def running(self) -> Iterator[ForwardProxy]:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        server: list[asyncio.base_events.Server] = []

        async def start() -> None:
            server.append(await asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{server[0].sockets[0].getsockname()[1]}"
            ready.set()

        thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            server[0].close()
