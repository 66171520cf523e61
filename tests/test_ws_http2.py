"""Websockets over HTTP/2 (RFC 8441): the server announces SETTINGS_ENABLE_CONNECT_PROTOCOL and
takes an extended CONNECT with `:protocol websocket` as a websocket, for RSGI and ASGI, on h2c
and h2 over TLS; several websockets and plain requests share one connection. Driven by the
`h2` package, frame by frame."""

import json
import socket
import ssl
import struct
import zlib

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

from tests.server_support import HOST, ServerPool
from tests.test_websockets import BINARY, CLOSE, TEXT, close_payload, frame

TARGETS = {'rsgi': 'tests.apps.ws_apps:rsgi_app', 'asgi': 'tests.apps.ws_apps:asgi_app'}


class H2Client:
    """One HTTP/2 connection carrying websockets (extended CONNECT) and plain requests."""

    def __init__(self, sock: socket.socket, scheme: str = 'http'):
        self.sock = sock
        self.scheme = scheme
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
        self.conn.initiate_connection()
        self.data: dict = {}
        self.headers: dict = {}
        self.ended: set = set()
        self._flush()
        while not self.conn.remote_settings.enable_connect_protocol:
            self._pump()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def _pump(self) -> None:
        received = self.sock.recv(65536)
        if not received:
            raise EOFError('the server closed the connection')
        for event in self.conn.receive_data(received):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data[event.stream_id] = self.data.get(event.stream_id, b'') + event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
        self._flush()

    def websocket(self, path: str, headers=()) -> int:
        """Opens a websocket on a new stream; `headers`: more request headers (an extension offer)."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (':method', 'CONNECT'),
            (':protocol', 'websocket'),
            (':scheme', self.scheme),
            (':path', path),
            (':authority', HOST),
            ('sec-websocket-version', '13'),
            *headers,
        ]
        self.conn.send_headers(stream, headers)
        self._flush()
        while stream not in self.headers:
            self._pump()
        assert self.headers[stream][':status'] == '200', self.headers[stream]
        return stream

    def get(self, path: str) -> tuple:
        stream = self.conn.get_next_available_stream_id()
        pseudo = [(':method', 'GET'), (':scheme', self.scheme), (':path', path), (':authority', HOST)]
        self.conn.send_headers(stream, pseudo, end_stream=True)
        self._flush()
        while stream not in self.ended:
            self._pump()
        return self.headers[stream][':status'], self.data.get(stream, b'')

    def send(self, stream: int, opcode: int, payload: bytes, rsv: int = 0) -> None:
        self.conn.send_data(stream, frame(opcode, payload, rsv=rsv))
        self._flush()

    def receive(self, stream: int) -> tuple:
        """(opcode, payload) of the next websocket frame the server sent on `stream`."""
        first, payload = self.receive_raw(stream)
        return first & 0x0F, payload

    def receive_raw(self, stream: int) -> tuple:
        """(first header byte, payload) of the next websocket frame the server sent on `stream`."""
        while True:
            buffered = self.data.get(stream, b'')
            parsed = _parse(buffered)
            if parsed is not None:
                first, payload, used = parsed
                self.data[stream] = buffered[used:]
                return first, payload
            self._pump()


def _parse(data: bytes):
    """(first header byte, payload, bytes used) of one whole unmasked server frame at the start of `data`."""
    if len(data) < 2:
        return None
    size, at = data[1] & 0x7F, 2
    if size == 126:
        if len(data) < 4:
            return None
        size, at = struct.unpack('!H', data[2:4])[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, at = struct.unpack('!Q', data[2:10])[0], 10
    if len(data) < at + size:
        return None
    return data[0], data[at : at + size], at + size


@pytest.fixture(scope='module', params=sorted(TARGETS))
def server(request, tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp(f'ws-h2-{request.param}')) as pool:
        srv = pool.start(TARGETS[request.param], interface=request.param, ready='is serving')
        srv.interface = request.param
        yield srv


@pytest.fixture
def client(server):
    sock = socket.create_connection((HOST, server.port), timeout=10)
    yield H2Client(sock)
    sock.close()


def test_echo_text_and_binary_over_h2c(client):
    ws = client.websocket('/echo')
    client.send(ws, TEXT, 'héllo'.encode())
    assert client.receive(ws) == (TEXT, 'héllo'.encode())
    client.send(ws, BINARY, b'\x00\x01\x02')
    assert client.receive(ws) == (BINARY, b'\x00\x01\x02')


def test_compression_is_negotiated_over_http2_too(client):
    ws = client.websocket('/echo', headers=[('sec-websocket-extensions', 'permessage-deflate')])
    assert client.headers[ws]['sec-websocket-extensions'] == 'permessage-deflate'
    compressor, decompressor = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
    text = 'compressed over HTTP/2 ' * 20
    packed = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    client.send(ws, TEXT, packed[:-4], rsv=4)
    first, payload = client.receive_raw(ws)
    assert first == 0x80 | 0x40 | TEXT  # FIN, RSV1: compressed
    assert decompressor.decompress(payload + b'\x00\x00\xff\xff') == text.encode()


def test_the_scope_says_http_2_and_get(server, client):
    ws = client.websocket('/scope')
    opcode, payload = client.receive(ws)
    assert opcode == TEXT
    scope = json.loads(payload)
    assert scope['http_version'] == '2'
    if server.interface == 'rsgi':
        assert scope['proto'] == 'ws'
        assert scope['method'] == 'GET'
    else:
        assert scope['type'] == 'websocket'


def test_several_websockets_and_requests_share_one_connection(client):
    first, second = client.websocket('/echo'), client.websocket('/echo')
    client.send(first, TEXT, b'one')
    client.send(second, TEXT, b'two')
    status, _ = client.get('/scope')  # a plain request between the messages (404/426 from the app is fine)
    assert status.isdigit()
    assert client.receive(second) == (TEXT, b'two')
    assert client.receive(first) == (TEXT, b'one')
    for i in range(20):
        client.send(first, TEXT, f'again {i}'.encode())
        assert client.receive(first) == (TEXT, f'again {i}'.encode())


def test_close_codes(client):
    ws = client.websocket('/close?code=4001')
    assert client.receive(ws) == (TEXT, b'closing')
    opcode, payload = client.receive(ws)
    assert opcode == CLOSE
    assert struct.unpack('!H', payload[:2])[0] == 4001
    other = client.websocket('/echo')
    client.send(other, CLOSE, close_payload(1000))
    opcode, payload = client.receive(other)
    assert (opcode, struct.unpack('!H', payload[:2])[0]) == (CLOSE, 1000)


def test_over_tls_with_alpn_h2(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    cert_path, key_path = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(['h2'])
    with ServerPool(tmp_path) as pool:
        for interface in sorted(TARGETS):
            server = pool.start(TARGETS[interface], interface=interface, tls=(cert_path, key_path), ready='is serving')
            raw = socket.create_connection((HOST, server.port), timeout=10)
            with context.wrap_socket(raw, server_hostname=HOST) as tls:
                assert tls.selected_alpn_protocol() == 'h2'
                client = H2Client(tls, scheme='https')
                ws = client.websocket('/echo')
                client.send(ws, TEXT, b'over tls')
                assert client.receive(ws) == (TEXT, b'over tls')


def test_no_websockets_no_connect_protocol(tmp_path):
    with ServerPool(tmp_path) as pool:
        server = pool.start(TARGETS['rsgi'], '--no-ws', interface='rsgi', ready='is serving')
        sock = socket.create_connection((HOST, server.port), timeout=10)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        settings_seen = False
        while not settings_seen:
            for event in conn.receive_data(sock.recv(65536)):
                settings_seen = settings_seen or isinstance(event, h2.events.RemoteSettingsChanged)
        assert not conn.remote_settings.enable_connect_protocol
        sock.close()
