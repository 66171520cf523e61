"""Websocket limits and keep-alive as options: `--ws-max-message-size`, `--ws-max-frame-size`
(close 1009, the frame refused from its header), `--ws-ping-interval` and `--ws-idle-timeout`
(close 1001). The worker keeps serving after each."""

import os
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.server_support import ServerPool
from tests.test_websockets import BINARY, PING, TEXT, RawWS, close_of, connect, frame

TARGETS = {'rsgi': 'tests.apps.ws_apps:rsgi_app', 'asgi': 'tests.apps.ws_apps:asgi_app'}


@pytest.fixture(scope='module', params=sorted(TARGETS))
def server(request, tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp(f'ws-limits-{request.param}')) as pool:
        yield pool.start(
            TARGETS[request.param],
            '--ws-max-message-size',
            '4096',
            '--ws-max-frame-size',
            '1024',
            interface=request.param,
            ready='is serving',
        )


def test_messages_within_the_limits_come_back(server):
    with connect(server) as ws:
        # 4 fragments of 1 KiB: each frame at the frame limit, the message at the message limit.
        data = os.urandom(1024)
        ws.send(iter([data] * 4))
        assert ws.recv(timeout=10) == data * 4


def test_a_message_over_the_limit_is_closed_with_1009(server):
    with connect(server) as ws:
        ws.send(iter([os.urandom(1024)] * 4 + [b'!']))
        with pytest.raises(ConnectionClosed) as excinfo:
            ws.recv(timeout=10)
    assert close_of(excinfo)[0] == 1009
    with connect(server) as ws:  # the worker keeps serving
        ws.send('still here')
        assert ws.recv(timeout=10) == 'still here'


def test_a_frame_over_the_limit_is_refused_from_its_header(server):
    with RawWS(server) as raw:
        # The header announces 1025 bytes; no payload follows: the close comes anyway.
        raw.send(frame(BINARY, b'', length=1025))
        assert raw.read_close()[0] == 1009


def test_pings_at_the_interval(tmp_path):
    with ServerPool(tmp_path) as pool:
        server = pool.start(TARGETS['rsgi'], '--ws-ping-interval', '1', interface='rsgi', ready='is serving')
        with RawWS(server) as raw:
            opcode = raw.read_frame()[0]  # the first frame the server sends unasked
            assert opcode == PING


def test_a_silent_client_is_closed_after_the_idle_timeout(tmp_path):
    with ServerPool(tmp_path) as pool:
        server = pool.start(TARGETS['asgi'], '--ws-idle-timeout', '1', interface='asgi', ready='is serving')
        with RawWS(server) as raw:
            assert raw.read_close()[0] == 1001
        # A client that answers pings (the `websockets` client does, from its own thread)
        # sends pongs, and stays past the idle timeout.
        server2 = pool.start(
            TARGETS['asgi'], '--ws-idle-timeout', '2', '--ws-ping-interval', '1', interface='asgi', ready='is serving'
        )
        with connect(server2) as ws:
            for i in range(4):
                ws.send(f'message {i}')
                assert ws.recv(timeout=10) == f'message {i}'
                time.sleep(1)


def test_text_frames_obey_the_same_limits(server):
    with RawWS(server) as raw:
        raw.send(frame(TEXT, b'x' * 1025))
        assert raw.read_close()[0] == 1009
