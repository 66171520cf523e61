"""Helpers shared by the RSGI test modules: raw HTTP/1 sockets, raw HTTP/2 connections, httpx clients."""

import socket
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import hpack
import httpx
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .server_support import HOST, wait_for  # noqa: F401 - `wait_for` is imported from here by the test modules

TIMEOUT = 10


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list = field(default_factory=list)
    body: bytes = b''

    def header(self, name: str, default=None):
        for key, value in self.headers:
            if key == name.lower():
                return value
        return default

    def header_all(self, name: str) -> list:
        return [value for key, value in self.headers if key == name.lower()]


class RawHTTP1:
    """An HTTP/1.1 client on one plain socket, for keep-alive, pipelining and malformed input."""

    def __init__(self, port: int, timeout: float = TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b''

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('connection closed by the server')
        self.buf += data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        idx = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return out

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def read_head(self) -> RawResponse:
        head = self.read_until(b'\r\n\r\n').decode('latin-1')
        lines = head.split('\r\n')
        _version, status, *reason = lines[0].split(' ', 2)
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(':')
                headers.append((name.strip().lower(), value.strip()))
        return RawResponse(int(status), reason[0] if reason else '', headers)

    def read_response(self, head_request: bool = False) -> RawResponse:
        """Reads one final response (skipping 1xx), its body framed by content-length or chunks."""
        response = self.read_head()
        while 100 <= response.status < 200:
            response = self.read_head()
        if head_request or response.status in (204, 304):
            return response
        if response.header('transfer-encoding', '').lower() == 'chunked':
            body = b''
            while True:
                size = int(self.read_until(b'\r\n').strip().split(b';')[0], 16)
                if size == 0:
                    self.read_until(b'\r\n')
                    break
                body += self.read_exact(size)
                self.read_until(b'\r\n')
            response.body = body
        elif response.header('content-length') is not None:
            response.body = self.read_exact(int(response.header('content-length')))
        else:
            response.body = self.read_to_eof()
        return response

    def read_to_eof(self) -> bytes:
        """Everything until the server closes (a reset after the data counts as a close)."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
        except ConnectionResetError:
            pass
        out, self.buf = self.buf, b''
        return out

    def is_closed_by_server(self) -> bool:
        """True when the server closes the connection (EOF or reset) within the socket timeout.

        Whatever the server sends before closing is kept in `self.buf`.
        """
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def send_until_refused(self, data: bytes) -> None:
        """Sends `data`; a server that answers and closes before reading it all may reset the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def request_bytes(method: str, path: str, headers=(), body: bytes = b'', host: str = 'test') -> bytes:
    lines = [f'{method} {path} HTTP/1.1', f'host: {host}']
    lines += [f'{k}: {v}' for k, v in headers]
    if body:
        lines.append(f'content-length: {len(body)}')
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + body


@dataclass
class H2Response:
    status: int = 0
    headers: list = field(default_factory=list)
    body: bytes = b''
    ended: bool = False
    reset: bool = False
    trailers: list = field(default_factory=list)


class RawH2:
    """A prior-knowledge (h2c) HTTP/2 client on one socket, frame by frame, built on the `h2` package."""

    def __init__(self, port: int, timeout: float = TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        config = h2.config.H2Configuration(client_side=True, header_encoding='utf-8')
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.responses: dict = {}
        self.remote_settings: dict = {}
        self.terminated = False
        self._flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, headers=(), body: bytes | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [(':method', method), (':path', path), (':scheme', 'http'), (':authority', f'{HOST}')]
        self.conn.send_headers(stream_id, pseudo + list(headers), end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.responses[stream_id] = H2Response()
        self._flush()
        return stream_id

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id)
        self._flush()

    def pump(self) -> None:
        """Reads one batch of frames from the socket and records what they mean."""
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('connection closed by the server')
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                response = self.responses[event.stream_id]
                response.headers = list(event.headers)
                response.status = int(dict(event.headers)[':status'])
            elif isinstance(event, h2.events.DataReceived):
                self.responses[event.stream_id].body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                self.responses[event.stream_id].trailers = list(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                self.responses[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.responses[event.stream_id].reset = True
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for key, setting in event.changed_settings.items():
                    self.remote_settings[int(key)] = setting.new_value
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.terminated = True
        self._flush()

    def response(self, stream_id: int) -> H2Response:
        response = self.responses[stream_id]
        while not (response.ended or response.reset):
            self.pump()
        return response

    def wait_status(self, stream_id: int) -> H2Response:
        response = self.responses[stream_id]
        while not response.status:
            self.pump()
        return response


class FrameH2:
    """HTTP/2 (h2c) at the frame level, without a connection state machine.

    The `h2` package closes its connection state on the first GOAWAY, so it cannot follow a graceful
    shutdown (GOAWAY, PING, then the rest of the in-flight streams: python-hyper/h2#1181). This client
    keeps reading frames after a GOAWAY, answers SETTINGS and PING, and records what it saw.
    """

    def __init__(self, port: int, timeout: float = TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b''
        self.frames: list = []
        self.responses: dict = {}
        self.next_stream = 1
        self.sock.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + SettingsFrame(0).serialize())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str) -> int:
        stream_id = self.next_stream
        self.next_stream += 2
        headers = [(':method', method), (':path', path), (':scheme', 'http'), (':authority', HOST)]
        frame = HeadersFrame(stream_id, self.encoder.encode(headers), flags=['END_HEADERS', 'END_STREAM'])
        self.responses[stream_id] = H2Response()
        self.sock.sendall(frame.serialize())
        return stream_id

    def _read_frame(self):
        while len(self.buf) < 9:
            self._fill()
        frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
        while len(self.buf) < 9 + length:
            self._fill()
        frame.parse_body(memoryview(self.buf[9 : 9 + length]))
        self.buf = self.buf[9 + length :]
        return frame

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('connection closed by the server')
        self.buf += data

    def pump(self) -> None:
        frame = self._read_frame()
        self.frames.append(type(frame).__name__)
        if isinstance(frame, SettingsFrame) and 'ACK' not in frame.flags:
            self.sock.sendall(SettingsFrame(0, flags=['ACK']).serialize())
        elif isinstance(frame, PingFrame) and 'ACK' not in frame.flags:
            self.sock.sendall(PingFrame(0, frame.opaque_data, flags=['ACK']).serialize())
        elif isinstance(frame, HeadersFrame):
            response = self.responses[frame.stream_id]
            response.headers = self.decoder.decode(bytes(frame.data))
            response.status = int(dict(response.headers)[':status'])
        elif isinstance(frame, DataFrame):
            self.responses[frame.stream_id].body += bytes(frame.data)
            if frame.flow_controlled_length:
                update = frame.flow_controlled_length
                self.sock.sendall(
                    WindowUpdateFrame(0, window_increment=update).serialize()
                    + WindowUpdateFrame(frame.stream_id, window_increment=update).serialize()
                )
        elif isinstance(frame, RstStreamFrame):
            self.responses[frame.stream_id].reset = True
        if isinstance(frame, HeadersFrame | DataFrame) and 'END_STREAM' in frame.flags:
            self.responses[frame.stream_id].ended = True

    def response(self, stream_id: int) -> H2Response:
        response = self.responses[stream_id]
        while not (response.ended or response.reset):
            self.pump()
        return response


def http_client(url: str, proto: str) -> httpx.Client:
    """httpx speaking HTTP/1.1, or HTTP/2 with prior knowledge on plain http (h2c)."""
    h2 = proto == 'h2'
    client = httpx.Client(base_url=url, timeout=TIMEOUT, http1=not h2, http2=h2)
    client.expected_version = 'HTTP/2' if h2 else 'HTTP/1.1'
    client.scope_version = '2' if h2 else '1.1'
    return client


def get(c: httpx.Client, *args, **kwargs) -> httpx.Response:
    """GET that also checks the response came over the client's HTTP version."""
    response = c.get(*args, **kwargs)
    assert response.http_version == c.expected_version
    return response
