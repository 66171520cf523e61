"""Apps for the embedded server tests: an ASGI app and an RSGI app that record their life cycle.

HTTP routes (both):
  /            'ok <tag>' where tag tells app instances apart
  /slow        sleeps 0.5 s, then answers 'slow done' (`slow_started` counts the calls that began)
  /proto       the HTTP version the app saw
Websocket route (both): /ws echoes text messages.
"""

import asyncio
import json
from typing import List


class AsgiApp:
    def __init__(self, tag: str = 'asgi'):
        self.tag = tag
        self.events: List[str] = []
        self.slow_started = 0

    async def __call__(self, scope, receive, send):
        if scope['type'] == 'lifespan':
            while True:
                message = await receive()
                phase = message['type'].removeprefix('lifespan.')
                self.events.append(phase)
                await send({'type': f'lifespan.{phase}.complete'})
                if phase == 'shutdown':
                    return
        if scope['type'] == 'websocket':
            await receive()  # websocket.connect
            await send({'type': 'websocket.accept'})
            while True:
                message = await receive()
                if message['type'] == 'websocket.disconnect':
                    return
                await send({'type': 'websocket.send', 'text': message.get('text') or ''})
        path = scope['path']
        if path == '/slow':
            self.slow_started += 1
            await asyncio.sleep(0.5)
            body = b'slow done'
        elif path == '/proto':
            body = scope['http_version'].encode()
        elif path == '/state':
            body = json.dumps(sorted(scope.get('state', {}))).encode()
        else:
            body = f'ok {self.tag}'.encode()
        await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
        await send({'type': 'http.response.body', 'body': body})


class RsgiApp:
    def __init__(self, tag: str = 'rsgi'):
        self.tag = tag
        self.events: List[str] = []
        self.slow_started = 0

    def __rsgi_init__(self, loop):
        self.events.append('init')

    def __rsgi_del__(self, loop):
        self.events.append('del')

    async def __rsgi__(self, scope, proto):
        if scope.proto == 'ws':
            transport = await proto.accept()
            while True:
                message = await transport.receive()
                if message.kind == 0:
                    return
                await transport.send_str(message.data if isinstance(message.data, str) else message.data.decode())
        path = scope.path
        if path == '/slow':
            self.slow_started += 1
            await asyncio.sleep(0.5)
            body = 'slow done'
        elif path == '/proto':
            body = scope.http_version
        else:
            body = f'ok {self.tag}'
        proto.response_str(200, [('content-type', 'text/plain')], body)
