"""permessage-deflate (RFC 7692): negotiated when the client offers it (`--ws-compression`, on by
default), refused with `--no-ws-compression` or when the client offers nothing; the offer's
parameters answered as the RFC says; messages intact both ways; a compressed frame that inflates
past `--ws-max-message-size` closed with 1009 while the worker keeps serving.

The `websockets` client checks the common case end to end; raw frames (deflated here with zlib)
check what is on the wire: RSV1 on the server's messages, windows and context takeover."""

import json
import os
import zlib

import pytest

from tests.server_support import ServerPool
from tests.test_websockets import BINARY, TEXT, RawWS, close_of, connect, frame

TARGETS = {'rsgi': 'tests.apps.ws_apps:rsgi_app', 'asgi': 'tests.apps.ws_apps:asgi_app'}
RSV1 = 0x4
TAIL = b'\x00\x00\xff\xff'
# Compressible and not: JSON a chat app would send, and random bytes.
JSON_TEXT = json.dumps([{'id': i, 'user': f'user-{i % 7}', 'text': 'hello ' * (i % 5)} for i in range(100)])


@pytest.fixture(scope='module', params=sorted(TARGETS))
def server(request, tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp(f'ws-deflate-{request.param}')) as pool:
        yield pool.start(
            TARGETS[request.param],
            '--ws-max-message-size',
            str(1024 * 1024),
            interface=request.param,
            ready='is serving',
        )


def deflate(compressor, data: bytes) -> bytes:
    """One message's payload as RFC 7692 sends it: flushed, the tail taken off."""
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4] or b'\x00'


def inflate(decompressor, payload: bytes) -> bytes:
    return decompressor.decompress(payload + TAIL)


def read_compressed(raw: RawWS) -> tuple:
    """(opcode, compressed payload) of the server's next message, which must be compressed."""
    first, payload = raw.read_raw_frame()
    assert first & 0x80, 'the server fragmented a message'
    assert (first >> 4) & 0x7 == RSV1, f'not compressed: {first:#x}'
    return first & 0x0F, payload


def offer(value: str):
    return [('sec-websocket-extensions', value)]


def test_the_default_offer_of_websockets_is_taken(server):
    with connect(server, max_size=None) as ws:
        # Its offer lets the server choose the client's window: 4 KiB.
        assert ws.response.headers['sec-websocket-extensions'] == 'permessage-deflate; client_max_window_bits=12'
        assert [ext.name for ext in ws.protocol.extensions] == ['permessage-deflate']
        messages = [JSON_TEXT, JSON_TEXT.encode(), 'é' * 50_000, os.urandom(300_000), '', b'', 'x']
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_a_client_that_offers_nothing_gets_plain_frames(server):
    with connect(server, compression=None) as ws:
        assert 'sec-websocket-extensions' not in ws.response.headers
        ws.send(JSON_TEXT)
        assert ws.recv(timeout=10) == JSON_TEXT
    with RawWS(server) as raw:
        raw.send(frame(TEXT, JSON_TEXT.encode()))
        assert raw.read_message() == (TEXT, JSON_TEXT.encode())  # read_frame asserts no RSV bit


def test_the_server_compresses_with_context(server):
    with RawWS(server, headers=offer('permessage-deflate; client_max_window_bits')) as raw:
        assert raw.head.header('sec-websocket-extensions') == 'permessage-deflate; client_max_window_bits=12'
        compressor = zlib.compressobj(wbits=-12)  # as answered
        decompressor = zlib.decompressobj(wbits=-15)
        sizes = []
        # Shorter than the server's 4 KiB window, so that the second copy can refer to the first.
        short = JSON_TEXT[:2000].encode()
        for data in [short, short]:
            raw.send(frame(TEXT, deflate(compressor, data), rsv=RSV1))
            opcode, payload = read_compressed(raw)
            assert opcode == TEXT
            assert inflate(decompressor, payload) == data
            sizes.append(len(payload))
        # The second copy refers back to the first (without the context, both would be the same size).
        assert sizes[1] < sizes[0] * 3 // 4, sizes
        # An uncompressed message from the client is fine too (RSV1 clear); the echo is compressed.
        raw.send(frame(BINARY, b'plain'))
        opcode, payload = read_compressed(raw)
        assert (opcode, inflate(decompressor, payload)) == (BINARY, b'plain')


def test_a_compressed_message_in_fragments_with_a_ping_between(server):
    with RawWS(server, headers=offer('permessage-deflate')) as raw:
        compressed = deflate(zlib.compressobj(wbits=-15), JSON_TEXT.encode())
        third = len(compressed) // 3
        raw.send(
            frame(TEXT, compressed[:third], fin=False, rsv=RSV1)
            + frame(0x9, b'are you there')
            + frame(0x0, compressed[third : 2 * third], fin=False)
            + frame(0x0, compressed[2 * third :])
        )
        first, payload = raw.read_raw_frame()
        assert (first & 0x0F, payload) == (0xA, b'are you there')
        opcode, payload = read_compressed(raw)
        assert opcode == TEXT
        assert inflate(zlib.decompressobj(wbits=-15), payload) == JSON_TEXT.encode()


def test_no_context_takeover_and_a_smaller_window_are_answered(server):
    value = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10'
    with RawWS(server, headers=offer(value)) as raw:
        assert raw.head.header('sec-websocket-extensions') == value
        sizes = []
        for _ in range(2):
            # Client without context too (it said so): a fresh compressor per message.
            raw.send(frame(TEXT, deflate(zlib.compressobj(wbits=-15), JSON_TEXT.encode()), rsv=RSV1))
            _, payload = read_compressed(raw)
            # A 1 KiB window reads it: the server kept to the window it was given, and a fresh
            # inflater reads each message: it kept no context.
            assert inflate(zlib.decompressobj(wbits=-10), payload) == JSON_TEXT.encode()
            sizes.append(len(payload))
        assert sizes[0] == sizes[1]


def test_offers_are_taken_in_order_and_bad_ones_declined(server):
    # A window of 8 cannot be kept by zlib: that offer is declined and the next one taken.
    value = 'permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover'
    with RawWS(server, headers=offer(value)) as raw:
        assert raw.head.header('sec-websocket-extensions') == 'permessage-deflate; server_no_context_takeover'
    for bad in ['permessage-deflate; server_max_window_bits=16', 'permessage-deflate; bogus', 'x-webkit-deflate-frame']:
        with RawWS(server, headers=offer(bad)) as raw:
            assert raw.head.header('sec-websocket-extensions') is None, bad
            raw.send(frame(TEXT, b'plain'))
            assert raw.read_message() == (TEXT, b'plain')


def test_rsv1_without_compression_is_a_protocol_error(server):
    with RawWS(server) as raw:
        raw.send(frame(TEXT, deflate(zlib.compressobj(wbits=-15), b'hello'), rsv=RSV1))
        assert raw.read_close()[0] == 1002


def test_a_frame_that_does_not_inflate_is_a_protocol_error(server):
    with RawWS(server, headers=offer('permessage-deflate')) as raw:
        raw.send(frame(TEXT, b'\xff\xff\xff\xff', rsv=RSV1))
        assert raw.read_close()[0] == 1002


def test_an_inflation_bomb_is_closed_with_1009(server):
    # 64 MiB of zeros deflate to about 64 KiB; the server's limit here is 1 MiB.
    bomb = deflate(zlib.compressobj(9, wbits=-15), bytes(64 * 1024 * 1024))
    assert len(bomb) < 100_000
    with RawWS(server, headers=offer('permessage-deflate')) as raw:
        raw.send(frame(BINARY, bomb, rsv=RSV1))
        assert raw.read_close()[0] == 1009
    with connect(server) as ws:  # the worker keeps serving
        ws.send(JSON_TEXT)
        assert ws.recv(timeout=10) == JSON_TEXT


def test_the_limit_applies_to_the_inflated_message(server):
    from websockets.exceptions import ConnectionClosed

    with connect(server, max_size=None) as ws:
        ws.send(b'a' * (1024 * 1024 + 1))  # compresses to about 1 KiB
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
    assert close_of(excinfo)[0] == 1009


@pytest.mark.parametrize('interface', sorted(TARGETS))
def test_no_ws_compression_refuses_every_offer(tmp_path, interface):
    with ServerPool(tmp_path) as pool:
        server = pool.start(TARGETS[interface], '--no-ws-compression', interface=interface, ready='is serving')
        with connect(server) as ws:
            assert 'sec-websocket-extensions' not in ws.response.headers
            assert ws.protocol.extensions == []
            ws.send(JSON_TEXT)
            assert ws.recv(timeout=10) == JSON_TEXT
        with RawWS(server, headers=offer('permessage-deflate')) as raw:
            assert raw.head.header('sec-websocket-extensions') is None
