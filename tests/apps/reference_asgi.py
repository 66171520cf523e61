"""A plain ASGI 3 app, as a user of granian 2.8.7 would write it (no framework, nothing server specific).

tests/test_reference_apps.py runs it on ours and on the reference granian 2.8.7. Routes:

lifespan                    startup puts values in `scope['state']`; shutdown writes what the app saw as
                            JSON to the file named by REFERENCE_ASGI_SHUTDOWN_FILE, when set
HTTP
  /scope                    the scope as JSON (bytes decoded), with what the lifespan state gave and the
                            lifespan and request counts
  /body                     the body received message by message; its size and digest in three streamed parts
  /stream?n=N               N streamed body parts, then an empty final one
  /state-mutate             changes its copy of the state; /scope then shows the original values
Websocket
  /ws/echo                  accept, echo text as text and bytes as bytes until the client disconnects
  /ws/close                 accept, send 'bye', close with code 4000 and reason 'done'
  /ws/reject                close before accepting (HTTP 403)
"""

import hashlib
import json
import os
from urllib.parse import parse_qs

LIFESPAN = {'startups': 0, 'shutdowns': 0, 'requests': 0}


def decoded_scope(scope: dict) -> dict:
    state = scope.get('state', {})
    return {
        'type': scope['type'],
        'asgi': scope['asgi'],
        'http_version': scope['http_version'],
        'method': scope.get('method'),
        'scheme': scope['scheme'],
        'path': scope['path'],
        'raw_path': scope['raw_path'].decode('latin-1'),
        'query_string': scope['query_string'].decode('latin-1'),
        'root_path': scope['root_path'],
        'headers': [[name.decode('latin-1'), value.decode('latin-1')] for name, value in scope['headers']],
        'client': list(scope['client']),
        'server': list(scope['server']),
        'state_greeting': state.get('greeting'),
        'state_counter': state.get('counter'),
        'lifespan': dict(LIFESPAN),
    }


def report_shutdown() -> None:
    path = os.environ.get('REFERENCE_ASGI_SHUTDOWN_FILE')
    if path:
        with open(path, 'w') as out:
            json.dump(LIFESPAN, out)


async def lifespan(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message['type'] == 'lifespan.startup':
            LIFESPAN['startups'] += 1
            scope['state']['greeting'] = 'hello from startup'
            scope['state']['counter'] = 1
            await send({'type': 'lifespan.startup.complete'})
        elif message['type'] == 'lifespan.shutdown':
            LIFESPAN['shutdowns'] += 1
            report_shutdown()
            await send({'type': 'lifespan.shutdown.complete'})
            return


async def send_json(send, data, status: int = 200) -> None:
    body = json.dumps(data).encode()
    headers = [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode())]
    await send({'type': 'http.response.start', 'status': status, 'headers': headers})
    await send({'type': 'http.response.body', 'body': body})


async def http(scope, receive, send) -> None:
    LIFESPAN['requests'] += 1
    path = scope['path']
    query = {key: values[0] for key, values in parse_qs(scope['query_string'].decode()).items()}

    if path == '/scope':
        await send_json(send, decoded_scope(scope))
    elif path == '/body':
        sha = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            assert message['type'] == 'http.request'
            chunk = message.get('body', b'')
            size += len(chunk)
            sha.update(chunk)
            if not message.get('more_body', False):
                break
        await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
        await send({'type': 'http.response.body', 'body': f'size={size};'.encode(), 'more_body': True})
        await send({'type': 'http.response.body', 'body': f'sha256={sha.hexdigest()};'.encode(), 'more_body': True})
        await send({'type': 'http.response.body', 'body': b'end'})
    elif path == '/stream':
        await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
        for i in range(int(query.get('n', '5'))):
            await send({'type': 'http.response.body', 'body': f'part-{i};'.encode(), 'more_body': True})
        await send({'type': 'http.response.body', 'body': b'', 'more_body': False})
    elif path == '/own-server':
        await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'server', b'reference-app')]})
        await send({'type': 'http.response.body', 'body': b'named'})
    elif path == '/state-mutate':
        scope['state']['greeting'] = 'changed by a request'
        scope['state']['counter'] = 99
        await send_json(send, {'mutated': True})
    else:
        await send({'type': 'http.response.start', 'status': 404, 'headers': [(b'content-type', b'text/plain')]})
        await send({'type': 'http.response.body', 'body': b'not found'})


async def websocket(scope, receive, send) -> None:
    message = await receive()
    assert message['type'] == 'websocket.connect'
    path = scope['path']

    if path == '/ws/reject':
        await send({'type': 'websocket.close', 'code': 1008})
        return

    await send({'type': 'websocket.accept'})
    if path == '/ws/echo':
        while True:
            message = await receive()
            if message['type'] == 'websocket.disconnect':
                return
            if message.get('text') is not None:
                await send({'type': 'websocket.send', 'text': message['text']})
            else:
                await send({'type': 'websocket.send', 'bytes': message['bytes']})
    elif path == '/ws/close':
        await send({'type': 'websocket.send', 'text': 'bye'})
        await send({'type': 'websocket.close', 'code': 4000, 'reason': 'done'})
    else:
        await send({'type': 'websocket.close', 'code': 1008})


async def app(scope, receive, send) -> None:
    if scope['type'] == 'lifespan':
        await lifespan(scope, receive, send)
    elif scope['type'] == 'http':
        await http(scope, receive, send)
    elif scope['type'] == 'websocket':
        await websocket(scope, receive, send)
