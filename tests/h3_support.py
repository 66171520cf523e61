"""A small HTTP/3 client for the tests, on aioquic: one QUIC connection, many requests on it.

    async with H3Client(port, ca_path) as client:
        answer = await client.request('GET', '/path')
        answers = await asyncio.gather(*(client.request('GET', '/') for _ in range(50)))
        answer = await client.request('POST', '/echo', body=[b'x' * 65536] * 16)   # sent chunk by chunk

An answer has the status, the headers (lower-case str names), the body, and the QUIC reset code if the
server broke the response off.
"""

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Self, Tuple, Union

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

HOST = '127.0.0.1'


@dataclass
class H3Answer:
    status: int = 0
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b''
    reset: Optional[int] = None

    def header(self, name: str) -> Optional[str]:
        return next((v for k, v in self.headers if k == name), None)


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.answers: Dict[int, H3Answer] = {}
        self.waiters: Dict[int, asyncio.Future] = {}
        self.terminated = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset) and event.stream_id in self.waiters:
            self.answers[event.stream_id].reset = event.error_code
            self._done(event.stream_id)
        if isinstance(event, ConnectionTerminated):
            self.terminated.set()
            for stream_id in list(self.waiters):
                self._done(stream_id)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)
        # aioquic may not flag the last frame when the FIN came with it: the QUIC event tells.
        if isinstance(event, StreamDataReceived) and event.end_stream and event.stream_id in self.waiters:
            self._done(event.stream_id)

    def _h3_event(self, event: H3Event) -> None:
        answer = self.answers.get(getattr(event, 'stream_id', -1))
        if answer is None:
            return
        if isinstance(event, HeadersReceived):
            headers = [(k.decode(), v.decode()) for k, v in event.headers]
            if not answer.status:
                answer.status = int(dict(headers)[':status'])
                answer.headers = [(k, v) for k, v in headers if not k.startswith(':')]
        elif isinstance(event, DataReceived):
            answer.body += event.data
        if getattr(event, 'stream_ended', False):
            self._done(event.stream_id)

    def _done(self, stream_id: int) -> None:
        waiter = self.waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(self.answers.pop(stream_id))


class H3Client:
    def __init__(self, port: int, ca: Optional[str] = None, host: str = HOST, timeout: float = 15.0):
        self.port = port
        self.host = host
        self.timeout = timeout
        self.config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
        if ca:
            self.config.load_verify_locations(ca)
        else:
            self.config.verify_mode = ssl.CERT_NONE
        self._connect = None
        self.protocol: Optional[_Protocol] = None

    async def __aenter__(self) -> Self:
        self._connect = connect(self.host, self.port, configuration=self.config, create_protocol=_Protocol)
        self.protocol = await asyncio.wait_for(self._connect.__aenter__(), self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._connect.__aexit__(*exc)

    async def request(
        self,
        method: str,
        path: str,
        headers: Iterable[Tuple[str, str]] = (),
        body: Union[bytes, Iterable[bytes]] = b'',
        pause: float = 0.0,
    ) -> H3Answer:
        """Sends the request (a body given as chunks goes out one by one, `pause` seconds apart) and waits
        for the whole answer."""
        protocol = self.protocol
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        chunks = [body] if isinstance(body, bytes) else list(body)
        chunks = [c for c in chunks if c]
        head = [
            (b':method', method.encode()),
            (b':scheme', b'https'),
            (b':authority', f'{self.host}:{self.port}'.encode()),
            (b':path', path.encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers),
        ]
        protocol.answers[stream_id] = H3Answer()
        waiter = asyncio.get_running_loop().create_future()
        protocol.waiters[stream_id] = waiter
        protocol.h3.send_headers(stream_id, head, end_stream=not chunks)
        protocol.transmit()
        for i, chunk in enumerate(chunks):
            if pause:
                await asyncio.sleep(pause)
            protocol.h3.send_data(stream_id, chunk, end_stream=i == len(chunks) - 1)
            protocol.transmit()
        return await asyncio.wait_for(waiter, self.timeout)

    def reset(self, stream_id: int) -> None:
        self.protocol._quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
        self.protocol.transmit()


def run(coro):
    """Runs a test's client coroutine to its end."""
    return asyncio.run(coro)
