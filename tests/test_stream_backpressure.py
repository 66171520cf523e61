"""Backpressure on streamed response bodies (RSGI response_stream, ASGI more_body, WSGI iterables and write()).

A client that does not read must hold the app back (it must not run to completion while the bytes pile up
in the server), a client that reads late must still get every byte in order, and a client that goes away
while the app is held back must let the app end.
"""

import json
import socket
import time

import httpx
import pytest

from .rsgi_support import HOST, TIMEOUT, request_bytes, wait_for

CHUNK = 64 * 1024
TARGETS = {
    'rsgi': ('tests.apps.stream_apps:rsgi_app', 'rsgi', ''),
    'asgi': ('tests.apps.stream_apps:asgi_app', 'asgi', ''),
    'wsgi': ('tests.apps.stream_apps:wsgi_app', 'wsgi', ''),
    'wsgi-write': ('tests.apps.stream_apps:wsgi_app', 'wsgi', '&mode=write'),
}
ALL = ['rsgi', 'asgi', 'wsgi', 'wsgi-write']


def start(start_server, tmp_path, kind: str, *args: str):
    target, interface, _ = TARGETS[kind]
    progress_dir = tmp_path / 'progress'
    progress_dir.mkdir(exist_ok=True)
    return start_server(
        target, '--workers', '1', *args, interface=interface, env={'STREAM_PROGRESS_DIR': str(progress_dir)}
    )


def read_progress(tmp_path, key: str):
    """{'sent': chunks handed to the server, 'end': how the app ended or None}; None before the app started."""
    try:
        return json.loads((tmp_path / 'progress' / f'{key}.json').read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not created or not written yet
        return None


def wait_stalled(tmp_path, key: str, total: int, quiet: float = 0.5, deadline: float = 20.0) -> int:
    """Waits until the app has handed over some chunks and then none for `quiet` seconds; returns the count."""
    limit = time.monotonic() + deadline
    last, since = None, time.monotonic()
    while time.monotonic() < limit:
        progress = read_progress(tmp_path, key)
        sent = progress['sent'] if progress else None
        if sent != last:
            last, since = sent, time.monotonic()
        elif sent and time.monotonic() - since >= quiet:
            return sent
        if progress and (progress['end'] or sent >= total):
            raise AssertionError(f'the app was not held back by a client that reads nothing: {progress}')
        time.sleep(0.05)
    raise AssertionError(f'the app progress never settled within {deadline}s (last: {last})')


def read_response(sock: socket.socket) -> tuple:
    """Reads one HTTP/1.1 response from a buffered file on `sock`: (status, headers, body), chunked or not."""
    reader = sock.makefile('rb')
    status = int(reader.readline().split()[1])
    headers = {}
    while (line := reader.readline()) != b'\r\n':
        assert line.endswith(b'\r\n'), f'bad header line {line!r}'
        name, _, value = line.decode('latin-1').partition(':')
        headers[name.strip().lower()] = value.strip()
    if headers.get('transfer-encoding', '').lower() != 'chunked':
        return status, headers, reader.read(int(headers['content-length']))
    body = bytearray()
    while True:
        line = reader.readline()
        assert line.endswith(b'\r\n'), f'bad chunk size line {line!r}'
        size = int(line.split(b';')[0], 16)
        if size == 0:
            assert reader.readline() == b'\r\n'
            return status, headers, bytes(body)
        data = reader.read(size)
        assert len(data) == size, 'the connection ended inside a chunk'
        body += data
        assert reader.read(2) == b'\r\n'


def wait_end(srv, tmp_path, key: str, timeout: float) -> dict:
    """Waits until the app records how it ended; on timeout, reports its last progress and the server log."""
    try:
        return wait_for(lambda: (p := read_progress(tmp_path, key)) and p['end'] and p, timeout=timeout, what='')
    except AssertionError:
        progress = read_progress(tmp_path, key)
        raise AssertionError(
            f'the app did not end within {timeout}s; last progress {progress}\n--- server log ---\n{srv.log[-3000:]}'
        ) from None


def expected_pattern(count: int) -> bytes:
    return b''.join(bytes([i % 251]) * CHUNK for i in range(count))


def first_difference(a: bytes, b: bytes) -> int:
    """The offset of the first differing byte of two bodies of the same length (for the failure message)."""
    for offset in range(0, len(a), CHUNK):
        if a[offset : offset + CHUNK] != b[offset : offset + CHUNK]:
            return offset + next(i for i in range(CHUNK) if a[offset + i] != b[offset + i])
    return -1


@pytest.mark.parametrize('kind', ALL)
def test_slow_reader_holds_the_app_back_and_gets_everything(start_server, tmp_path, kind):
    total = 1024
    srv = start(start_server, tmp_path, kind)
    key = f'slow-{kind}'
    with socket.create_connection((HOST, srv.port), timeout=TIMEOUT) as conn:
        conn.sendall(request_bytes('GET', f'/pattern?key={key}&n={total}{TARGETS[kind][2]}', host=HOST))
        held_at = wait_stalled(tmp_path, key, total)
        # 64 KiB chunks: whatever the socket buffers and the 256 KiB pipe hold is far below half the stream.
        assert 0 < held_at < total // 2, f'the app handed over {held_at} of {total} chunks while nobody read'
        status, _headers, body = read_response(conn)
    assert status == 200
    expected = expected_pattern(total)
    assert len(body) == len(expected), f'got {len(body)} bytes, expected {len(expected)}'
    assert body == expected, f'the body differs from the pattern at offset {first_difference(body, expected)}'
    final = wait_end(srv, tmp_path, key, timeout=10)
    assert final['sent'] == total
    assert final['end'] == {'asgi': 'completed, then http.disconnect', 'wsgi': 'closed'}.get(kind, 'completed'), final


@pytest.mark.parametrize('kind', ALL)
def test_client_gone_while_held_back_lets_the_app_end(start_server, tmp_path, kind):
    total = 100_000
    srv = start(start_server, tmp_path, kind)
    key = f'gone-{kind}'
    conn = socket.create_connection((HOST, srv.port), timeout=TIMEOUT)
    try:
        conn.sendall(request_bytes('GET', f'/pattern?key={key}&n={total}{TARGETS[kind][2]}', host=HOST))
        held_at = wait_stalled(tmp_path, key, total)
        assert 0 < held_at < 512
    finally:
        conn.close()
    final = wait_end(srv, tmp_path, key, timeout=15)
    if kind == 'rsgi':
        # send_bytes to a gone client raises.
        assert final['end'].startswith('error:'), final
        assert final['sent'] < total
    elif kind == 'asgi':
        # Sending to a gone client is a no-op (ASGI spec): the loop runs to its end without an exception,
        # and then receive() tells the app the client is gone.
        assert final['end'] == 'completed, then http.disconnect', final
        assert final['sent'] == total
    elif kind == 'wsgi':
        # The server stops iterating and still calls close().
        assert final['end'] == 'closed', final
        assert final['sent'] < total, final
    else:
        # write() to a gone client either raises (then early) or is a no-op; either way the app must not hang.
        assert final['end'] == 'completed' or (final['end'].startswith('error:') and final['sent'] < total), final
    response = httpx.get(srv.url + '/ping', timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == 'pong'


@pytest.mark.parametrize('proto', ['h1', 'h2'])
@pytest.mark.parametrize('kind', ALL)
def test_many_small_chunks_arrive_intact_and_in_order(start_server, tmp_path, kind, proto):
    srv = start(start_server, tmp_path, kind, '--http', '2' if proto == 'h2' else '1')
    expected = b''.join(str(i).encode() + b',' for i in range(2000))
    h2 = proto == 'h2'
    with httpx.Client(timeout=TIMEOUT, http1=not h2, http2=h2) as client:
        response = client.get(srv.url + '/small?' + TARGETS[kind][2].lstrip('&'))
    assert response.status_code == 200
    assert response.http_version == ('HTTP/2' if h2 else 'HTTP/1.1')
    assert response.content == expected
