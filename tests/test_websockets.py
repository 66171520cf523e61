"""Websockets over RSGI and ASGI, driven by the `websockets` client and by raw sockets (frame by frame).

Apps: tests/apps/ws_apps.py. One server per interface serves most tests; `--no-ws` and TLS get their own.
"""

import asyncio
import base64
import hashlib
import json
import os
import ssl
import struct
import uuid

import httpx
import pytest
import trustme
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from .rsgi_support import HOST, TIMEOUT, RawHTTP1, request_bytes, wait_for
from .server_support import ServerPool

TARGETS = {'rsgi': 'tests.apps.ws_apps:rsgi_app', 'asgi': 'tests.apps.ws_apps:asgi_app'}
MiB = 1024 * 1024
MAX_MESSAGE = 16 * MiB  # --ws-max-message-size's default

# Frame opcodes (RFC 6455 5.2).
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# -- servers and clients -----------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def servers(tmp_path_factory):
    """One server per interface, started on first use, shared by the module."""
    started = {}

    with ServerPool(tmp_path_factory.mktemp('ws')) as pool:

        def get(interface: str):
            if interface not in started:
                started[interface] = pool.start(TARGETS[interface], interface=interface)
            return started[interface]

        yield get


@pytest.fixture(params=['rsgi', 'asgi'])
def server(request, servers):
    srv = servers(request.param)
    srv.interface = request.param
    return srv


@pytest.fixture
def asgi_server(servers):
    srv = servers('asgi')
    srv.interface = 'asgi'
    return srv


@pytest.fixture
def rsgi_server(servers):
    srv = servers('rsgi')
    srv.interface = 'rsgi'
    return srv


def ws_url(server, path: str, scheme: str = 'ws') -> str:
    return f'{scheme}://{HOST}:{server.port}{path}'


def connect(server, path: str = '/echo', **kwargs):
    """The sync `websockets` client, with timeouts, no proxy from the environment and no keepalive pings."""
    kwargs.setdefault('open_timeout', TIMEOUT)
    kwargs.setdefault('close_timeout', TIMEOUT)
    kwargs.setdefault('ping_interval', None)
    kwargs.setdefault('proxy', None)
    return ws_connect(ws_url(server, path), **kwargs)


def recorded(server, key: str, timeout: float = TIMEOUT):
    """What the app recorded under `key`, waiting for it (the app records after the connection ended)."""

    def fetch():
        return httpx.get(f'{server.url}/recorded', params={'id': key}, timeout=TIMEOUT).json()

    return wait_for(fetch, timeout=timeout, what=f'the app to record {key}')


def new_key() -> str:
    return uuid.uuid4().hex


def close_of(excinfo) -> tuple:
    """(code, reason) of the close frame the client received, from a ConnectionClosed."""
    rcvd = excinfo.value.rcvd
    assert rcvd is not None, f'no close frame received: {excinfo.value!r}'
    return rcvd.code, rcvd.reason


# -- raw websocket (frame level) ---------------------------------------------------------------------------------


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').encode()).digest()
    return base64.b64encode(digest).decode()


def upgrade_request(path: str, key: str, headers=()) -> bytes:
    base = [
        ('upgrade', 'websocket'),
        ('connection', 'Upgrade'),
        ('sec-websocket-key', key),
        ('sec-websocket-version', '13'),
    ]
    return request_bytes('GET', path, headers=base + list(headers), host=HOST)


def frame(opcode: int, payload: bytes = b'', fin: bool = True, masked: bool = True, rsv: int = 0, length=None) -> bytes:
    """One client frame; `length` announces a payload length different from the one sent."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack('!H', size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack('!Q', size)
    if masked:
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_payload(code: int, reason: str = '') -> bytes:
    return struct.pack('!H', code) + reason.encode()


class RawWS:
    """A websocket on a plain socket: the handshake, then frames as given (valid or not)."""

    def __init__(self, server, path: str = '/echo', early: bytes = b'', headers=()):
        """`early`: frames sent in the same write as the upgrade request, before the 101 arrives;
        `headers`: more request headers (an extension offer)."""
        self.http = RawHTTP1(server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.http.send(upgrade_request(path, key, headers) + early)
        self.head = head = self.http.read_head()
        assert head.status == 101, head
        assert head.header('upgrade', '').lower() == 'websocket'
        assert head.header('sec-websocket-accept') == accept_key(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.http.close()

    def send(self, data: bytes) -> None:
        self.http.send_until_refused(data)

    def read_frame(self) -> tuple:
        """(opcode, fin, payload) of the next server frame (server frames are never masked)."""
        first, payload = self.read_raw_frame()
        assert first & 0x70 == 0, 'the server set reserved bits'
        return first & 0x0F, bool(first & 0x80), payload

    def read_raw_frame(self) -> tuple:
        """(first header byte, payload) of the next server frame: the caller judges the bits."""
        head = self.http.read_exact(2)
        assert head[1] & 0x80 == 0, 'the server masked a frame'
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack('!H', self.http.read_exact(2))[0]
        elif size == 127:
            size = struct.unpack('!Q', self.http.read_exact(8))[0]
        return head[0], self.http.read_exact(size)

    def read_message(self) -> tuple:
        """(opcode, payload) of the next data message, reassembled; control frames other than close skipped."""
        opcode, fin, payload = self.read_frame()
        while opcode in (PING, PONG):
            opcode, fin, payload = self.read_frame()
        while not fin:
            _, fin, more = self.read_frame()
            payload += more
        return opcode, payload

    def read_close(self) -> tuple:
        """(code, reason) of the server's close frame, skipping other frames; code None for an empty one."""
        while True:
            opcode, _, payload = self.read_frame()
            if opcode == CLOSE:
                if not payload:
                    return None, ''
                return struct.unpack('!H', payload[:2])[0], payload[2:].decode()

    def closed_by_server(self) -> bool:
        """The server ends the TCP connection with nothing more sent (no second close frame)."""
        closed = self.http.is_closed_by_server()
        assert self.http.buf == b'', f'unexpected data after the close frame: {self.http.buf[:100]!r}'
        return closed


# -- echo ----------------------------------------------------------------------------------------------------------

SIZES = [1, 125, 126, 127, 65535, 65536, MiB, 16 * MiB]


def test_echo_bytes_sizes(server):
    """Binary messages from 1 byte to 16 MiB come back intact, across the 7/16/64-bit length encodings."""
    with connect(server, max_size=32 * MiB) as ws:
        for size in SIZES:
            data = os.urandom(size) if size <= MiB else os.urandom(MiB) * (size // MiB)
            ws.send(data)
            echoed = ws.recv(timeout=TIMEOUT)
            assert isinstance(echoed, bytes)
            assert len(echoed) == size
            assert echoed == data


def test_echo_text_sizes(server):
    """Text messages from 1 byte to 16 MiB (multi-byte characters included) come back as text, intact."""
    with connect(server, max_size=32 * MiB) as ws:
        for size in SIZES:
            text = ('aé€😀' * (size // 10 + 1)).encode()[:size].decode('utf-8', 'ignore')
            ws.send(text)
            echoed = ws.recv(timeout=TIMEOUT)
            assert isinstance(echoed, str)
            assert echoed == text


def test_echo_mixed_and_empty(server):
    """Text and binary interleave and keep their type and order; empty messages of both kinds work."""
    messages = ['', b'', 'text', b'\x00\xff bytes', 'ünïcødé 😀', b'\x00' * 300, 'end']
    with connect(server) as ws:
        for message in messages:
            ws.send(message)
        echoed = [ws.recv(timeout=TIMEOUT) for _ in messages]
    assert echoed == messages
    assert [type(m) for m in echoed] == [type(m) for m in messages]


def test_echo_many_messages_pipelined(server):
    """Far more messages than the server's queues hold, sent before reading any answer, all come back in order."""
    count = 500
    with connect(server, max_queue=None) as ws:
        for i in range(count):
            ws.send(f'message {i}' if i % 2 else f'message {i}'.encode())
        for i in range(count):
            expected = f'message {i}' if i % 2 else f'message {i}'.encode()
            assert ws.recv(timeout=TIMEOUT) == expected


def test_fragmented_messages_reassembled(server):
    """A message sent in fragments reaches the app as one message (text and binary)."""
    with connect(server) as ws:
        ws.send(iter(['frag', 'men', 'ted ', 'tëxt']))
        assert ws.recv(timeout=TIMEOUT) == 'fragmented tëxt'
        ws.send(iter([b'\x00\x01', b'', b'\x02' * 70000, b'\x03']))
        assert ws.recv(timeout=TIMEOUT) == b'\x00\x01' + b'\x02' * 70000 + b'\x03'
        ws.send('after')
        assert ws.recv(timeout=TIMEOUT) == 'after'


def test_raw_fragments_split_utf8_and_interleaved_ping(server):
    """Raw: a character split across fragments is valid text; a ping between fragments gets its pong at once."""
    with RawWS(server) as raw:
        raw.send(frame(TEXT, b'caf\xc3', fin=False))
        raw.send(frame(PING, b'mid-message'))
        opcode, fin, payload = raw.read_frame()
        assert (opcode, fin, payload) == (PONG, True, b'mid-message')
        raw.send(frame(CONT, b'\xa9', fin=False))
        raw.send(frame(CONT, b' au lait', fin=True))
        assert raw.read_message() == (TEXT, 'café au lait'.encode())
        raw.send(frame(BINARY, b'\x01', fin=False) + frame(CONT, b'\x02', fin=True))
        assert raw.read_message() == (BINARY, b'\x01\x02')
        raw.send(frame(CLOSE, close_payload(1000)))
        assert raw.read_close() == (1000, '')
        assert raw.closed_by_server()


def test_handshake_header_tokens_are_case_insensitive_lists(server):
    """`Connection: keep-alive, Upgrade` and `Upgrade: WebSocket` are a valid upgrade request."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = request_bytes(
        'GET',
        '/echo',
        headers=[
            ('Upgrade', 'WebSocket'),
            ('Connection', 'keep-alive, Upgrade'),
            ('Sec-WebSocket-Key', key),
            ('Sec-WebSocket-Version', '13'),
        ],
        host=HOST,
    )
    with RawHTTP1(server.port) as conn:
        conn.send(request)
        head = conn.read_head()
        assert head.status == 101
        assert head.header('sec-websocket-accept') == accept_key(key)


def test_frames_sent_with_the_handshake_are_not_lost(server):
    """Raw: frames in the same packet as the upgrade request (before the 101 arrives) are delivered."""
    with RawWS(server, '/echo', early=frame(TEXT, b'eager') + frame(BINARY, b'\x01\x02')) as raw:
        assert raw.read_message() == (TEXT, b'eager')
        assert raw.read_message() == (BINARY, b'\x01\x02')


# -- server push -------------------------------------------------------------------------------------------------


def test_server_push(server):
    """The app sends several messages right after accepting, without being asked."""
    with connect(server, '/push?n=7') as ws:
        received = [ws.recv(timeout=TIMEOUT) for _ in range(8)]
        assert received == [f'push {i}' for i in range(7)] + [b'push-bytes']
        ws.send('then echo')
        assert ws.recv(timeout=TIMEOUT) == 'then echo'


# -- close -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('code', [1000, 1001, 1011, 3000, 4001, 4999])
def test_server_close_code_reaches_client(server, code):
    """The app closes with a code; the client receives exactly that code (never 1005), after the queued message."""
    key = new_key()
    with connect(server, f'/close?code={code}&reason=server%20bye&id={key}') as ws:
        assert ws.recv(timeout=TIMEOUT) == 'closing'
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=TIMEOUT)
    got_code, reason = close_of(excinfo)
    assert got_code == code
    # RSGI `close(status)` takes no reason; ASGI `websocket.close` carries one.
    assert reason == ('server bye' if server.interface == 'asgi' else '')
    # The app's next receive tells it the websocket ended.
    after = recorded(server, key)
    if server.interface == 'asgi':
        assert after['type'] == 'websocket.disconnect'
        assert after['code'] == code
    else:
        assert after == {'kind': 0, 'data': None}


def test_server_close_raw_frame(server):
    """Raw: the close frame carries the app's code (and ASGI reason), then the server ends the connection."""
    with RawWS(server, '/close?code=4001&reason=raw') as raw:
        assert raw.read_message() == (TEXT, b'closing')
        assert raw.read_close() == (4001, 'raw' if server.interface == 'asgi' else '')
        raw.send(frame(CLOSE, close_payload(4001)))
        assert raw.closed_by_server()


def test_client_close_code_and_reason(server):
    """The client closes with 4001 and a reason: the server's close reply has 4001, the app sees the end
    (ASGI: `websocket.disconnect` with the client's code and reason)."""
    key = new_key()
    with connect(server, f'/record?id={key}') as ws:
        ws.send('one')
        assert ws.recv(timeout=TIMEOUT) == 'one'
        ws.close(4001, 'client bye')
        assert ws.protocol.close_sent.code == 4001
        assert ws.protocol.close_rcvd is not None, 'the server never answered the close'
        assert ws.protocol.close_rcvd.code == 4001
    after = recorded(server, key)
    if server.interface == 'asgi':
        assert after == {'code': 4001, 'reason': 'client bye', 'echoed': 1}
    else:
        assert after == {'closed': True, 'echoed': 1, 'send_after_close': 'ProtocolClosed'}


@pytest.mark.parametrize('code', [1000, 1001, 3999, 4999])
def test_asgi_disconnect_carries_client_code(asgi_server, code):
    key = new_key()
    with connect(asgi_server, f'/record?id={key}') as ws:
        ws.close(code, f'reason {code}')
        assert ws.protocol.close_rcvd.code == code
    assert recorded(asgi_server, key) == {'code': code, 'reason': f'reason {code}', 'echoed': 0}


def test_client_close_raw_after_data(server):
    """Raw: a message then a close frame in one packet: the app gets the message before the end (ASGI: with the
    client's code and reason); the server answers with one close frame carrying the code. (Its echo of the message
    may be dropped: RFC 6455 lets a close reply go out at once, and nothing may follow it.)"""
    key = new_key()
    with RawWS(server, f'/record?id={key}') as raw:
        raw.send(frame(TEXT, b'before') + frame(CLOSE, close_payload(4001, 'raw bye')))
        assert raw.read_close()[0] == 4001
        assert raw.closed_by_server()
    after = recorded(server, key)
    assert after['echoed'] == 1
    if server.interface == 'asgi':
        assert after == {'code': 4001, 'reason': 'raw bye', 'echoed': 1}


def test_client_close_without_code(server):
    """Raw: an empty close frame is answered with a close frame; ASGI reports code 1005 (no status)."""
    key = new_key()
    with RawWS(server, f'/record?id={key}') as raw:
        raw.send(frame(CLOSE, b''))
        code, reason = raw.read_close()
        assert code in (None, 1000)
        assert reason == ''
        assert raw.closed_by_server()
    after = recorded(server, key)
    if server.interface == 'asgi':
        assert after == {'code': 1005, 'reason': '', 'echoed': 0}
    else:
        assert after['closed'] is True


def drop_after_one_message(server) -> dict:
    """Raw: one echoed message, then the TCP connection closed without a close frame; what the app recorded."""
    key = new_key()
    raw = RawWS(server, f'/record?id={key}')
    raw.send(frame(TEXT, b'hello'))
    assert raw.read_message() == (TEXT, b'hello')
    raw.http.close()
    return recorded(server, key)


def test_client_drops_connection(server):
    """A client gone without a close frame ends the app's loop."""
    after = drop_after_one_message(server)
    assert after['echoed'] == 1
    if server.interface == 'rsgi':
        assert after['closed'] is True
        assert after['send_after_close'] == 'ProtocolClosed'


def test_asgi_client_drop_is_disconnect_1006(asgi_server):
    after = drop_after_one_message(asgi_server)
    assert after == {'code': 1006, 'reason': '', 'echoed': 1}


# -- handshake refused -------------------------------------------------------------------------------------------


@pytest.mark.parametrize('path', ['/reject', '/reject-return'])
def test_reject_before_accept_is_403(server, path):
    with pytest.raises(InvalidStatus) as excinfo:
        connect(server, path)
    assert excinfo.value.response.status_code == 403
    # The server still serves websockets afterwards.
    with connect(server) as ws:
        ws.send('still here')
        assert ws.recv(timeout=TIMEOUT) == 'still here'


def test_reject_raw_response(server):
    with RawHTTP1(server.port) as conn:
        conn.send(upgrade_request('/reject', base64.b64encode(os.urandom(16)).decode()))
        response = conn.read_response()
    assert response.status == 403
    assert response.header('sec-websocket-accept') is None


def test_asgi_denial_response(asgi_server):
    """`websocket.http.response.start/body`: the client gets the app's status, headers and (multi-part) body."""
    with pytest.raises(InvalidStatus) as excinfo:
        connect(asgi_server, '/deny')
    response = excinfo.value.response
    assert response.status_code == 401
    assert response.headers['x-denied'] == 'yes'
    assert response.body == b'nope'


def test_asgi_denial_raw(asgi_server):
    with RawHTTP1(asgi_server.port) as conn:
        conn.send(upgrade_request('/deny', base64.b64encode(os.urandom(16)).decode()))
        response = conn.read_response()
    assert response.status == 401
    assert response.body == b'nope'
    assert response.header('content-type') == 'text/plain'
    assert response.header('x-denied') == 'yes'
    assert response.header('sec-websocket-accept') is None


def test_asgi_denial_extension_in_scope(asgi_server):
    with connect(asgi_server, '/scope?a=1') as ws:
        scope = json.loads(ws.recv(timeout=TIMEOUT))
    assert 'websocket.http.response' in scope['extensions']


# -- scope -------------------------------------------------------------------------------------------------------


def test_asgi_websocket_scope(asgi_server):
    with connect(asgi_server, '/scope?a=1&b=x%20y') as ws:
        scope = json.loads(ws.recv(timeout=TIMEOUT))
    assert scope['type'] == 'websocket'
    assert scope['scheme'] == 'ws'
    assert scope['asgi']['version'] == '3.0'
    assert scope['path'] == '/scope'
    assert scope['raw_path'] == '/scope'
    assert scope['query_string'] == 'a=1&b=x%20y'
    assert scope['root_path'] == ''
    assert scope['headers_ok'] is True
    assert scope['upgrade'].lower() == 'websocket'
    assert scope['subprotocols'] == []
    assert scope['client'][0] == HOST
    assert scope['server'] == [HOST, asgi_server.port]
    assert scope['http_version'] == '1.1'
    for key in ('type', 'asgi', 'scheme', 'path', 'raw_path', 'query_string', 'root_path', 'headers', 'subprotocols'):
        assert key in scope['keys']


def test_rsgi_websocket_scope(rsgi_server):
    with connect(rsgi_server, '/scope?a=1') as ws:
        scope = json.loads(ws.recv(timeout=TIMEOUT))
    assert scope['proto'] == 'ws'
    assert scope['scheme'] == 'http'
    assert scope['method'] == 'GET'
    assert scope['path'] == '/scope'
    assert scope['query_string'] == 'a=1'
    assert scope['http_version'] == '1.1'
    assert scope['upgrade'].lower() == 'websocket'
    assert scope['key']


# -- subprotocols (ASGI) -----------------------------------------------------------------------------------------


def test_asgi_subprotocol_negotiated(asgi_server):
    with connect(asgi_server, '/subproto', subprotocols=['chat.v1', 'chat.v2']) as ws:
        assert ws.subprotocol == 'chat.v2'
        assert ws.response.headers['sec-websocket-protocol'] == 'chat.v2'
        assert ws.response.headers['x-accepted'] == 'yes'
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {'subprotocols': ['chat.v1', 'chat.v2']}
        ws.send('works')
        assert ws.recv(timeout=TIMEOUT) == 'works'


def test_asgi_subprotocol_none_offered(asgi_server):
    with connect(asgi_server, '/subproto') as ws:
        assert ws.subprotocol is None
        assert 'sec-websocket-protocol' not in ws.response.headers
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {'subprotocols': []}


def test_asgi_subprotocol_single_offer(asgi_server):
    with connect(asgi_server, '/subproto', subprotocols=['graphql-ws']) as ws:
        assert ws.subprotocol == 'graphql-ws'
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {'subprotocols': ['graphql-ws']}


# -- ping / pong -------------------------------------------------------------------------------------------------


def test_client_ping_gets_pong(server):
    with connect(server) as ws:
        for payload in (b'', b'hello', os.urandom(125)):
            assert ws.ping(payload).wait(TIMEOUT), 'no pong'
        ws.send('after pings')
        assert ws.recv(timeout=TIMEOUT) == 'after pings'


def test_raw_ping_pong_payload(server):
    """Raw: each ping is answered by a pong with the same payload, without any data message in between."""
    with RawWS(server) as raw:
        for payload in (b'', b'x', b'\x00\xff' * 62):
            raw.send(frame(PING, payload))
            assert raw.read_frame() == (PONG, True, payload)
        # An unsolicited pong is ignored.
        raw.send(frame(PONG, b'unsolicited') + frame(TEXT, b'next'))
        assert raw.read_message() == (TEXT, b'next')


# -- limits and invalid frames -----------------------------------------------------------------------------------


def test_frame_announcing_more_than_64_mib_is_refused(server):
    """Raw: a frame header announcing 65 MiB gets close 1009 without the payload ever being sent."""
    key = new_key()
    with RawWS(server, f'/record?id={key}') as raw:
        raw.send(frame(BINARY, b'', length=65 * MiB))
        assert raw.read_close()[0] == 1009
        assert raw.closed_by_server()
    after = recorded(server, key)
    if server.interface == 'asgi':
        assert after['code'] == 1009
    else:
        assert after['closed'] is True


def test_message_above_the_default_limit_is_refused(rsgi_server):
    """A message of 16 MiB + 1 byte in 1 MiB fragments (each frame under the limit) gets close 1009."""
    chunk = os.urandom(MiB)
    with connect(rsgi_server, close_timeout=TIMEOUT) as ws:
        ws.send(iter([chunk] * (MAX_MESSAGE // MiB) + [b'!']))
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=30)
    assert close_of(excinfo)[0] == 1009


INVALID_FRAMES = {
    'unmasked': (frame(TEXT, b'hello', masked=False), 1002),
    'reserved-data-opcode': (frame(0x3, b'data'), 1002),
    'reserved-control-opcode': (frame(0xB, b''), 1002),
    'rsv1-without-extension': (frame(TEXT, b'hello', rsv=4), 1002),
    'continuation-without-start': (frame(CONT, b'orphan'), 1002),
    'text-during-fragmented-message': (frame(TEXT, b'a', fin=False) + frame(TEXT, b'b'), 1002),
    'fragmented-ping': (frame(PING, b'p', fin=False), 1002),
    'ping-payload-above-125': (frame(PING, b'p' * 126), 1002),
    'invalid-utf8': (frame(TEXT, b'bad \xff\xfe utf-8'), 1007),
    'invalid-utf8-across-fragments': (frame(TEXT, b'ok \xc3', fin=False) + frame(CONT, b'(', fin=True), 1007),
    'truncated-utf8-at-end': (frame(TEXT, b'ends in \xe2\x82'), 1007),
    'close-invalid-utf8-reason': (frame(CLOSE, struct.pack('!H', 1000) + b'\xff'), 1007),
}


@pytest.mark.parametrize('case', list(INVALID_FRAMES))
def test_invalid_frame_closes_with_code(server, case):
    """Raw: protocol violations get close 1002, invalid UTF-8 text 1007, then the connection ends."""
    data, expected = INVALID_FRAMES[case]
    key = new_key()
    with RawWS(server, f'/record?id={key}') as raw:
        raw.send(data)
        assert raw.read_close()[0] == expected
        assert raw.closed_by_server()
    after = recorded(server, key)
    if server.interface == 'asgi':
        assert after['code'] == expected
        assert after['echoed'] == 0
    else:
        assert after['closed'] is True


@pytest.mark.parametrize('code', [0, 999, 1004, 1005, 1006, 1015, 2999])
def test_client_close_with_forbidden_code_is_protocol_error(asgi_server, code):
    """Raw: a close frame with a code no endpoint may send is answered with 1002."""
    key = new_key()
    with RawWS(asgi_server, f'/record?id={key}') as raw:
        raw.send(frame(CLOSE, close_payload(code)))
        assert raw.read_close()[0] == 1002
        assert raw.closed_by_server()
    assert recorded(asgi_server, key)['code'] != code


# -- --no-ws -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('interface', ['rsgi', 'asgi'])
def test_no_ws_upgrade_reaches_app_as_http(start_server, interface):
    server = start_server(TARGETS[interface], '--no-ws', interface=interface)
    with RawHTTP1(server.port) as conn:
        conn.send(upgrade_request('/echo?x=1', base64.b64encode(os.urandom(16)).decode()))
        response = conn.read_response()
    assert response.status == 200
    assert response.header('sec-websocket-accept') is None
    scope = json.loads(response.body)
    assert scope['upgrade'].lower() == 'websocket'
    if interface == 'rsgi':
        assert scope['proto'] == 'http'
        assert scope['path'] == '/echo'
    else:
        assert scope['type'] == 'http'
        assert scope['scheme'] == 'http'
        assert scope['method'] == 'GET'
        assert scope['path'] == '/echo'
    # The websockets client sees a plain HTTP answer, not a handshake.
    with pytest.raises(InvalidStatus) as excinfo:
        connect(server, '/echo')
    assert excinfo.value.response.status_code == 200


# -- many clients ------------------------------------------------------------------------------------------------


def test_many_idle_websockets_while_serving_http(server):
    """200 websockets held open at once; the worker keeps answering HTTP, then every socket still echoes."""
    count = 200

    async def scenario():
        url = ws_url(server, '/echo')
        sockets = await asyncio.gather(
            *(
                websockets.connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, ping_interval=None, proxy=None)
                for _ in range(count)
            )
        )
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
                responses = await asyncio.gather(*(client.get(f'/plain/{i}') for i in range(50)))
            assert all(r.status_code == 200 for r in responses)

            async def roundtrip(i, ws):
                await ws.send(f'idle {i}')
                return await asyncio.wait_for(ws.recv(), TIMEOUT)

            echoed = await asyncio.gather(*(roundtrip(i, ws) for i, ws in enumerate(sockets)))
            assert echoed == [f'idle {i}' for i in range(count)]
        finally:
            await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), TIMEOUT * 2)
        assert all(ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000 for ws in sockets)

    asyncio.run(scenario())


# -- TLS ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def tls_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ws-tls')
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, 'localhost')
    cert.cert_chain_pems[0].write_to_path(str(folder / 'cert.pem'))
    cert.private_key_pem.write_to_path(str(folder / 'key.pem'))
    ca.cert_pem.write_to_path(str(folder / 'ca.pem'))
    return folder


@pytest.mark.parametrize('interface', ['rsgi', 'asgi'])
def test_websockets_over_tls(start_server, tls_files, interface):
    """wss:// with a CA-trusted certificate: echo, ping, close codes; the scope says TLS.

    The asyncio client is used here: the sync client's reader thread races its own close over TLS
    (python-websockets/websockets#1596) and sometimes misses the server's close frame.
    """
    server = start_server(TARGETS[interface], interface=interface, tls=(tls_files / 'cert.pem', tls_files / 'key.pem'))
    context = ssl.create_default_context(cafile=str(tls_files / 'ca.pem'))

    async def scenario():
        async with websockets.connect(
            ws_url(server, '/scope', scheme='wss'),
            ssl=context,
            max_size=4 * MiB,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
            ping_interval=None,
            proxy=None,
        ) as ws:
            scope = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            payload = os.urandom(2 * MiB)
            await ws.send(payload)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == payload
            await ws.send(iter(['tls ', 'text']))
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == 'tls text'
            await asyncio.wait_for(await ws.ping(b'tls'), TIMEOUT)
            await asyncio.wait_for(ws.close(4001, 'bye'), TIMEOUT * 2)
            assert ws.protocol.close_rcvd is not None
            assert ws.protocol.close_rcvd.code == 4001
        async with websockets.connect(
            ws_url(server, '/close?code=4002&reason=tls', scheme='wss'),
            ssl=context,
            open_timeout=TIMEOUT,
            close_timeout=TIMEOUT,
            ping_interval=None,
            proxy=None,
        ) as ws:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == 'closing'
            with pytest.raises(ConnectionClosed) as excinfo:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert close_of(excinfo)[0] == 4002
        return scope

    scope = asyncio.run(scenario())
    if interface == 'asgi':
        assert scope['scheme'] == 'wss'
        assert scope['type'] == 'websocket'
    else:
        assert scope['proto'] == 'ws'
        assert scope['scheme'] == 'https'
    # A plain ws:// client gets no websocket from a TLS listener.
    with pytest.raises((OSError, websockets.exceptions.InvalidHandshake, websockets.exceptions.InvalidMessage)):
        connect(server, '/echo', open_timeout=5)
