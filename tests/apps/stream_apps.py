"""Streaming apps (RSGI, ASGI, WSGI iterable, WSGI write()) for the backpressure tests.

Routes (the same on every interface):
  /pattern?key=K&n=N  N chunks of 64 KiB, chunk i filled with the byte i % 251
  /small              2000 small chunks: b'0,', b'1,', ... b'1999,' (b'' between some of them)
  /ping               a plain 'pong'
With `?mode=write`, the WSGI app streams through the write() callable instead of an iterable.

The streaming routes report their progress to the test in $STREAM_PROGRESS_DIR/K.json, rewritten
in place: {"sent": chunks handed to the server so far, "end": how the stream ended, or null}.
"""

import asyncio
import json
import os
from urllib.parse import parse_qs

from tests.apps.lifespan import complete_lifespan

CHUNK = 64 * 1024
SMALL_COUNT = 2000


def pattern_chunk(i: int) -> bytes:
    return bytes([i % 251]) * CHUNK


def small_chunks():
    for i in range(SMALL_COUNT):
        yield str(i).encode() + b','
        if i % 100 == 0:
            yield b''  # empty chunks must not end the stream or show up in it


class Progress:
    """One fixed-width JSON record, rewritten in place by a single pwrite (cheap enough to do per chunk)."""

    def __init__(self, query: dict):
        path = os.path.join(os.environ['STREAM_PROGRESS_DIR'], query['key'] + '.json')
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.sent = 0
        self.end = None
        self.save()

    def save(self) -> None:
        os.pwrite(self.fd, json.dumps({'sent': self.sent, 'end': self.end}).ljust(100).encode(), 0)

    def chunk_sent(self) -> None:
        self.sent += 1
        self.save()

    def ended(self, how: str) -> None:
        self.end = how
        self.save()
        os.close(self.fd)


def parse_query(raw) -> dict:
    if isinstance(raw, bytes):
        raw = raw.decode('latin-1')
    return {k: v[0] for k, v in parse_qs(raw).items()}


# -- RSGI ---------------------------------------------------------------------------------------------------------


async def rsgi_app(scope, proto):
    query = parse_query(scope.query_string)
    if scope.path == '/pattern':
        progress = Progress(query)
        transport = proto.response_stream(200, [('content-type', 'application/octet-stream')])
        try:
            for i in range(int(query['n'])):
                await transport.send_bytes(pattern_chunk(i))
                progress.chunk_sent()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            progress.ended(f'error:{type(exc).__name__}')
            return
        progress.ended('completed')
    elif scope.path == '/small':
        transport = proto.response_stream(200, [('content-type', 'text/plain')])
        for chunk in small_chunks():
            await transport.send_bytes(chunk)
    else:
        proto.response_str(200, [('content-type', 'text/plain')], 'pong')


# -- ASGI ---------------------------------------------------------------------------------------------------------


async def next_event(receive) -> str:
    """The type of the first message after the (empty) request body, or 'nothing' within 10 s."""
    try:
        while (message := await asyncio.wait_for(receive(), 10))['type'] == 'http.request':
            pass
    except TimeoutError:
        return 'nothing'
    return message['type']


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        return await complete_lifespan(receive, send)
    query = parse_query(scope['query_string'])
    path = scope['path']
    content_type = b'application/octet-stream' if path == '/pattern' else b'text/plain'
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', content_type)]})
    if path == '/pattern':
        progress = Progress(query)
        try:
            for i in range(int(query['n'])):
                await send({'type': 'http.response.body', 'body': pattern_chunk(i), 'more_body': True})
                progress.chunk_sent()
            await send({'type': 'http.response.body', 'body': b'', 'more_body': False})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            progress.ended(f'error:{type(exc).__name__}')
            return
        # Once the response is done (or the client gone) receive() must say http.disconnect (ASGI spec).
        progress.ended(f'completed, then {await next_event(receive)}')
    elif path == '/small':
        for chunk in small_chunks():
            await send({'type': 'http.response.body', 'body': chunk, 'more_body': True})
        await send({'type': 'http.response.body', 'body': b'', 'more_body': False})
    else:
        await send({'type': 'http.response.body', 'body': b'pong'})


# -- WSGI ---------------------------------------------------------------------------------------------------------


class PatternIterable:
    """Counts a chunk as handed over once the server asks for it; records close() (PEP 3333 requires it)."""

    def __init__(self, progress: Progress, count: int):
        self.progress = progress
        self.count = count

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.progress.sent >= self.count:
            raise StopIteration
        chunk = pattern_chunk(self.progress.sent)
        self.progress.chunk_sent()
        return chunk

    def close(self) -> None:
        self.progress.ended('closed')


def wsgi_app(environ, start_response):
    query = parse_query(environ.get('QUERY_STRING', ''))
    path = environ['PATH_INFO']
    use_write = query.get('mode') == 'write'
    if path == '/pattern':
        progress = Progress(query)
        write = start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        if not use_write:
            return PatternIterable(progress, int(query['n']))
        try:
            for i in range(int(query['n'])):
                write(pattern_chunk(i))
                progress.chunk_sent()
        except Exception as exc:
            progress.ended(f'error:{type(exc).__name__}')
            raise
        progress.ended('completed')
        return []
    if path == '/small':
        write = start_response('200 OK', [('Content-Type', 'text/plain')])
        if not use_write:
            return small_chunks()
        for chunk in small_chunks():
            write(chunk)
        return []
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'pong']
