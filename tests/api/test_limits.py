"""The HTTP protocol ``wacanon serve`` gives uvicorn (``wacanon.api.limits``), byte for byte.

uvicorn's own protocol and request cycle run here on a real event loop; only the
socket is replaced by a transport that records each write, so what is asserted is
exactly what would be sent, and in how many sends.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from wacanon.api.limits import GuardedHttpToolsProtocol


class RecordingTransport(asyncio.Transport):
    """The socket side: every write as it was made, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass


async def exchange(app: Any, *chunks: bytes) -> RecordingTransport:
    """Feed the request's ``chunks`` to the protocol, one at a time, letting the app run
    and answer between them."""
    config = Config(app, lifespan="off", log_level="warning")
    config.load()
    protocol = GuardedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, header_timeout=5.0
    )
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        for _ in range(20):  # the ASGI task, then its sends
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def app_sending(*messages: dict[str, Any], fail: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
        if fail:
            raise RuntimeError("the app failed mid-response")

    return app


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok"}
GET = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


def test_a_response_with_a_length_leaves_in_one_write() -> None:
    transport = asyncio.run(exchange(app_sending(START, BODY), GET))
    (sent,) = transport.writes
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent.endswith(b"\r\n\r\nok")
    assert b"content-length: 2\r\n" in sent


def test_keep_alive_serves_the_next_request_whole_too() -> None:
    transport = asyncio.run(exchange(app_sending(START, BODY), GET + GET))
    assert len(transport.writes) == 2
    assert all(w.endswith(b"\r\n\r\nok") for w in transport.writes)


def test_a_head_request_gets_its_headers_at_once() -> None:
    request = b"HEAD /health HTTP/1.1\r\nHost: test\r\n\r\n"
    transport = asyncio.run(exchange(app_sending(START, BODY), request))
    (sent,) = transport.writes
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sent.endswith(b"\r\n\r\n")  # no body for HEAD


def test_a_chunked_response_is_not_held_back() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": []}
    first = {"type": "http.response.body", "body": b"a", "more_body": True}
    last = {"type": "http.response.body", "body": b"b"}
    transport = asyncio.run(exchange(app_sending(start, first, last), GET))
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert transport.writes[1:] == [b"1\r\na\r\n", b"1\r\nb\r\n0\r\n\r\n"]


def test_a_body_in_parts_sends_the_head_with_the_first_part_only() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]}
    parts = [
        {"type": "http.response.body", "body": b"\r\n\r\n", "more_body": True},
        {"type": "http.response.body", "body": b"\r\n\r\n"},
    ]
    transport = asyncio.run(exchange(app_sending(start, *parts), GET))
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\n\r\n\r\n")  # head + first part
    assert transport.writes[1] == b"\r\n\r\n"  # a part that looks like a head still goes


def test_an_empty_body_is_not_held() -> None:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    transport = asyncio.run(exchange(app_sending(start, {"type": "http.response.body"}), GET))
    assert b"".join(transport.writes).endswith(b"content-length: 0\r\n\r\n")


def test_a_response_cut_short_still_sends_its_head_then_closes() -> None:
    part = {"type": "http.response.body", "body": b"o", "more_body": True}
    transport = asyncio.run(exchange(app_sending(START, fail=True), GET))
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.closed
    transport = asyncio.run(exchange(app_sending(START, part, fail=True), GET))
    assert b"".join(transport.writes).endswith(b"\r\n\r\no")
    assert transport.closed


def test_100_continue_goes_before_the_response() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        body = message.get("body", b"")
        await send(START | {"headers": [(b"content-length", str(len(body)).encode())]})
        await send(BODY | {"body": body})

    head = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    transport = asyncio.run(exchange(app, head, b"hi"))
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    (response,) = transport.writes[1:]
    assert response.endswith(b"\r\n\r\nhi")


def test_answered_requests_are_freed_without_the_garbage_collector() -> None:
    """A request's objects go when it is answered: the held head must not leave a
    reference cycle (cycle ↔ transport) for the garbage collector — one per webhook made
    the collector run every few dozen requests and its full passes stall the loop."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        asyncio.run(exchange(app_sending(START, BODY), GET * 6))
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, RequestResponseCycle)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    # uvicorn's protocol and the cycle of a connection's last request refer to each other
    # until the connection is gone: that one (per connection) is the collector's.
    assert len(left) <= 1
