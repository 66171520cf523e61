"""An RSGI app written by a user of granian 2.8.7 against its documented API only.

Everything it needs from the server comes from `granian.rsgi`, as the RSGI spec and the reference's stub
describe it; nothing here knows which implementation serves it. tests/test_reference_apps.py runs it on
ours and on the reference granian 2.8.7.

The app is a class with the `__rsgi__`, `__rsgi_init__` and `__rsgi_del__` hooks. Routes:

HTTP
  /scope                    the scope as JSON (headers through `get`, `items`, `keys`, `values`, `in`)
  /response/empty           response_empty: 204 with a header
  /response/str             response_str: non-ASCII text
  /response/bytes           response_bytes: `size` bytes (query)
  /response/kwargs          response_str with every argument by keyword (the README's form)
  /response/default-{empty,str,bytes,stream}
                            the response methods with status and headers left to their defaults
  /file?path=P              response_file
  /file-range?path=P&start=S&end=E
                            response_file_range
  /stream?n=N               response_stream, alternating send_bytes and send_str
  /body/call                the body read with `await proto()`, echoed with its digest in a header
  /body/iter                the body read with `async for chunk in proto`, summarised as JSON
  /body/twice               the body read twice: the second read raises ProtocolError
  /stream-until-gone?id=K   stream until the client leaves (ProtocolClosed), recorded under K
  /lifecycle                what __rsgi_init__ saw, and how many requests the app has had
  /recorded?id=K            what was recorded under K (JSON, null when nothing yet)
Websocket
  /ws/echo                  echo text as text and bytes as bytes until the client closes
  /ws/scope                 send the scope as JSON, then wait for the client to close
  /ws/reject                close(403) before accepting
  /ws/server-close          send 'bye', then close(1000)
  /ws/after-close?id=K      wait for the client to close, then try to send and receive (ProtocolClosed)

`__rsgi_del__` writes what it saw as JSON to the file named by REFERENCE_RSGI_DEL_FILE, when set.
"""

import asyncio
import hashlib
import json
import os
from urllib.parse import parse_qs

from granian.rsgi import (
    HTTPProtocol,
    ProtocolClosed,
    ProtocolError,
    Scope,
    WebsocketMessage,
    WebsocketMessageType,
    WebsocketProtocol,
)

JSON_HEADERS = [('content-type', 'application/json')]
TEXT_HEADERS = [('content-type', 'text/plain; charset=utf-8')]
UNICODE_TEXT = 'héllo wörld ✓ 日本語'


def query_of(scope: Scope) -> dict:
    return {key: values[0] for key, values in parse_qs(scope.query_string).items()}


def scope_as_dict(scope: Scope) -> dict:
    return {
        'proto': scope.proto,
        'rsgi_version': scope.rsgi_version,
        'http_version': scope.http_version,
        'method': scope.method,
        'scheme': scope.scheme,
        'path': scope.path,
        'query_string': scope.query_string,
        'client': scope.client,
        'server': scope.server,
        'authority': scope.authority,
        'items': [[name, value] for name, value in scope.headers.items()],
        'keys': list(scope.headers.keys()),
        'values': list(scope.headers.values()),
        'x_one': scope.headers.get('x-one'),
        'x_missing': scope.headers.get('x-missing'),
        'x_missing_default': scope.headers.get('x-missing', 'fallback'),
        'has_x_one': 'x-one' in scope.headers,
        'has_x_missing': 'x-missing' in scope.headers,
        'user_agent': scope.headers.get('user-agent'),
    }


class App:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.init_calls = 0
        self.requests = 0
        self.recorded: dict = {}

    # -- lifecycle hooks ---------------------------------------------------------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.init_calls += 1
        self.loop = loop

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        path = os.environ.get('REFERENCE_RSGI_DEL_FILE')
        if not path:
            return
        seen = {
            'init_calls': self.init_calls,
            'requests': self.requests,
            'same_loop_as_init': loop is self.loop,
            'is_event_loop': isinstance(loop, asyncio.AbstractEventLoop),
        }
        with open(path, 'w') as out:
            json.dump(seen, out)

    # -- entry point ---------------------------------------------------------------------------------------

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol | WebsocketProtocol) -> None:
        self.requests += 1
        if scope.proto == 'ws':
            await self.websocket(scope, proto)
        else:
            await self.http(scope, proto)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def send_json(self, proto: HTTPProtocol, data, status: int = 200) -> None:
        proto.response_str(status, JSON_HEADERS, json.dumps(data))

    async def http(self, scope: Scope, proto: HTTPProtocol) -> None:
        path = scope.path
        query = query_of(scope)

        if path == '/scope':
            self.send_json(proto, scope_as_dict(scope))
        elif path == '/response/empty':
            proto.response_empty(204, [('x-kind', 'empty')])
        elif path == '/own-server':
            proto.response_str(200, [('server', 'reference-app')], 'named')
        elif path == '/response/str':
            proto.response_str(200, TEXT_HEADERS, UNICODE_TEXT)
        elif path == '/response/bytes':
            size = int(query.get('size', '1024'))
            proto.response_bytes(200, [('content-type', 'application/octet-stream')], bytes(range(256)) * (size // 256))
        elif path == '/response/kwargs':
            proto.response_str(status=201, headers=[('content-type', 'text/plain'), ('x-kind', 'kwargs')], body='made')
        elif path == '/response/default-empty':
            proto.response_empty()
        elif path == '/response/default-str':
            proto.response_str(body='default str')
        elif path == '/response/default-bytes':
            proto.response_bytes(body=b'default bytes')
        elif path == '/response/default-stream':
            transport = proto.response_stream()
            await transport.send_str('default ')
            await transport.send_bytes(b'stream')
        elif path == '/file':
            proto.response_file(200, [('content-type', 'application/octet-stream')], query['path'])
        elif path == '/file-range':
            start, end = int(query['start']), int(query['end'])
            proto.response_file_range(206, [('content-type', 'application/octet-stream')], query['path'], start, end)
        elif path == '/stream':
            transport = proto.response_stream(200, TEXT_HEADERS)
            for i in range(int(query.get('n', '5'))):
                await transport.send_bytes(f'bytes-{i};'.encode())
                await transport.send_str(f'str-{i}-✓;')
        elif path == '/body/call':
            body = await proto()
            digest = hashlib.sha256(body).hexdigest()
            proto.response_bytes(200, [('content-type', 'application/octet-stream'), ('x-sha256', digest)], body)
        elif path == '/body/iter':
            sha = hashlib.sha256()
            chunks = 0
            size = 0
            async for chunk in proto:
                assert isinstance(chunk, bytes)
                chunks += 1
                size += len(chunk)
                sha.update(chunk)
            self.send_json(proto, {'chunks': chunks, 'size': size, 'sha256': sha.hexdigest()})
        elif path == '/body/twice':
            body = await proto()
            try:
                again = await proto()
            except ProtocolError as exc:
                second = {'error': 'ProtocolError', 'is_runtime_error': isinstance(exc, RuntimeError)}
            else:
                second = {'error': None, 'returned': repr(again)[:100]}
            self.send_json(proto, {'first': body.decode(), 'second': second})
        elif path == '/stream-until-gone':
            transport = proto.response_stream(200, [('content-type', 'application/octet-stream')])
            sent = 0
            try:
                while True:
                    await transport.send_bytes(b'z' * 4096)
                    sent += 1
                    await asyncio.sleep(0.001)
            except ProtocolClosed as exc:
                self.recorded[query['id']] = {
                    'ended_by': 'ProtocolClosed',
                    'is_runtime_error': isinstance(exc, RuntimeError),
                    'sent_some': sent > 0,
                }
        elif path == '/lifecycle':
            self.send_json(
                proto,
                {
                    'init_calls': self.init_calls,
                    'requests': self.requests,
                    'is_event_loop': isinstance(self.loop, asyncio.AbstractEventLoop),
                    'running_on_init_loop': asyncio.get_running_loop() is self.loop,
                },
            )
        elif path == '/recorded':
            self.send_json(proto, self.recorded.get(query['id']))
        else:
            proto.response_str(404, TEXT_HEADERS, 'not found')

    # -- websockets ----------------------------------------------------------------------------------------

    async def websocket(self, scope: Scope, proto: WebsocketProtocol) -> None:
        path = scope.path
        query = query_of(scope)

        if path == '/ws/reject':
            proto.close(403)
            return

        transport = await proto.accept()

        if path == '/ws/echo':
            while True:
                message: WebsocketMessage = await transport.receive()
                if message.kind == WebsocketMessageType.close:
                    break
                if message.kind == WebsocketMessageType.string:
                    await transport.send_str(message.data)
                elif message.kind == WebsocketMessageType.bytes:
                    await transport.send_bytes(message.data)
            proto.close()
        elif path == '/ws/scope':
            await transport.send_str(json.dumps(scope_as_dict(scope)))
            while (await transport.receive()).kind != WebsocketMessageType.close:
                pass
            proto.close()
        elif path == '/ws/server-close':
            await transport.send_str('bye')
            proto.close(1000)
        elif path == '/ws/after-close':
            message = await transport.receive()
            outcome = {'first_kind_is_close': message.kind == WebsocketMessageType.close}
            try:
                await transport.send_str('too late')
            except ProtocolClosed:
                outcome['send'] = 'ProtocolClosed'
            else:
                outcome['send'] = 'sent'
            try:
                again: WebsocketMessage = await transport.receive()
            except ProtocolClosed:
                outcome['receive'] = 'ProtocolClosed'
            else:
                outcome['receive'] = f'a message of kind {int(again.kind)}'
            self.recorded[query['id']] = outcome
            proto.close()
        else:
            proto.close(1008)


app = App()
