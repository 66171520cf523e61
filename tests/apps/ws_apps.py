"""Websocket apps for the websocket tests: `rsgi_app` (RSGI) and `asgi_app` (ASGI 3), routed by path.

Websocket routes (both apps unless noted):
  /echo                 accept, echo every message with its type (text or bytes) until the client leaves
  /push?n=N             accept, send N text messages and one binary message unprompted, then wait
  /close?code=C&reason=R&id=K
                        accept, send 'closing', close with code C (ASGI: and reason R), record the end
  /reject               close before accepting (HTTP 403)
  /reject-return        return without accepting (HTTP 403)
  /record?id=K          echo, and record how the connection ended under K
  /scope                accept, send the scope as JSON, then echo
  /deny (ASGI)          deny the handshake with 401, a header and 'nope' (two body parts)
  /subproto (ASGI)      accept with 'chat.v2' when offered (else the first offered, else none) and an
                        extra header, send the offered subprotocols as JSON, then echo
HTTP routes:
  /recorded?id=K        what was recorded under K (JSON, `null` when nothing yet)
  anything else         the request as the app saw it (JSON), e.g. an upgrade request under --no-ws
"""

import json
from urllib.parse import parse_qs

from granian.rsgi import ProtocolClosed

from tests.apps.lifespan import complete_lifespan

# How websockets ended, keyed by a test-chosen id (read back through `/recorded?id=`).
RECORDED: dict = {}


def _query(query_string) -> dict:
    if isinstance(query_string, bytes):
        query_string = query_string.decode('latin-1')
    return {k: v[0] for k, v in parse_qs(query_string).items()}


# -- RSGI --------------------------------------------------------------------------------------------------------


def _rsgi_scope(scope) -> dict:
    return {
        'proto': scope.proto,
        'http_version': scope.http_version,
        'scheme': scope.scheme,
        'method': scope.method,
        'path': scope.path,
        'query_string': scope.query_string,
        'upgrade': scope.headers.get('upgrade'),
        'key': scope.headers.get('sec-websocket-key'),
    }


async def _rsgi_echo(transport) -> int:
    """Echoes until the client leaves; returns how many messages were echoed."""
    count = 0
    while True:
        message = await transport.receive()
        if message.kind == 0:
            return count
        count += 1
        try:
            if message.kind == 1:
                await transport.send_bytes(message.data)
            else:
                await transport.send_str(message.data)
        except ProtocolClosed:
            # The client's close frame may already be in; the next receive reports it.
            pass


async def _rsgi_after_close(transport) -> str:
    """What sending on a closed transport does."""
    try:
        await transport.send_str('too late')
    except ProtocolClosed:
        return 'ProtocolClosed'
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return type(exc).__name__
    return 'no error'


async def rsgi_app(scope, proto):
    path = scope.path
    query = _query(scope.query_string)

    if scope.proto == 'http':
        if path == '/recorded':
            data = RECORDED.get(query.get('id'))
        else:
            data = _rsgi_scope(scope)
        proto.response_str(200, [('content-type', 'application/json')], json.dumps(data))
        return

    if path == '/reject':
        proto.close()
        return
    if path == '/reject-return':
        return

    transport = await proto.accept()
    if path == '/echo':
        await _rsgi_echo(transport)
    elif path == '/push':
        for i in range(int(query.get('n', '5'))):
            await transport.send_str(f'push {i}')
        await transport.send_bytes(b'push-bytes')
        await _rsgi_echo(transport)
    elif path == '/close':
        await transport.send_str('closing')
        proto.close(int(query['code']))
        message = await transport.receive()
        if 'id' in query:
            RECORDED[query['id']] = {'kind': message.kind, 'data': message.data}
    elif path == '/record':
        count = await _rsgi_echo(transport)
        after = await _rsgi_after_close(transport)
        RECORDED[query['id']] = {'closed': True, 'echoed': count, 'send_after_close': after}
    elif path == '/scope':
        await transport.send_str(json.dumps(_rsgi_scope(scope)))
        await _rsgi_echo(transport)
    else:
        proto.close(4404)


# -- ASGI --------------------------------------------------------------------------------------------------------


def _asgi_scope(scope) -> dict:
    headers = dict(scope['headers'])
    return {
        'keys': sorted(scope),
        'type': scope['type'],
        'asgi': scope['asgi'],
        'http_version': scope.get('http_version'),
        'scheme': scope['scheme'],
        'path': scope['path'],
        'raw_path': scope['raw_path'].decode('latin-1'),
        'query_string': scope['query_string'].decode('latin-1'),
        'root_path': scope['root_path'],
        'headers_ok': all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in scope['headers']),
        'upgrade': headers.get(b'upgrade', b'').decode('latin-1'),
        'subprotocols': scope.get('subprotocols'),
        'extensions': scope.get('extensions'),
        'client': list(scope['client']) if scope.get('client') else None,
        'server': list(scope['server']) if scope.get('server') else None,
        'method': scope.get('method'),
    }


async def _asgi_echo(receive, send) -> dict:
    """Echoes until the client leaves; returns the `websocket.disconnect` message and the count."""
    count = 0
    while True:
        message = await receive()
        if message['type'] == 'websocket.disconnect':
            return {'code': message.get('code'), 'reason': message.get('reason'), 'echoed': count}
        assert message['type'] == 'websocket.receive', message
        if message.get('bytes') is not None:
            await send({'type': 'websocket.send', 'bytes': message['bytes']})
        else:
            await send({'type': 'websocket.send', 'text': message['text']})
        count += 1


async def _asgi_json(send, data) -> None:
    payload = json.dumps(data).encode()
    await send(
        {
            'type': 'http.response.start',
            'status': 200,
            'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(payload)).encode())],
        }
    )
    await send({'type': 'http.response.body', 'body': payload})


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        return await complete_lifespan(receive, send)
    path = scope['path']
    query = _query(scope['query_string'])

    if scope['type'] == 'http':
        if path == '/recorded':
            return await _asgi_json(send, RECORDED.get(query.get('id')))
        return await _asgi_json(send, _asgi_scope(scope))

    assert scope['type'] == 'websocket', scope
    connect = await receive()
    assert connect['type'] == 'websocket.connect', connect

    if path == '/reject':
        await send({'type': 'websocket.close', 'code': 1000})
        return
    if path == '/reject-return':
        return
    if path == '/deny':
        await send(
            {
                'type': 'websocket.http.response.start',
                'status': 401,
                'headers': [(b'content-type', b'text/plain'), (b'x-denied', b'yes')],
            }
        )
        await send({'type': 'websocket.http.response.body', 'body': b'no', 'more_body': True})
        await send({'type': 'websocket.http.response.body', 'body': b'pe'})
        return
    if path == '/subproto':
        offered = scope['subprotocols']
        chosen = 'chat.v2' if 'chat.v2' in offered else (offered[0] if offered else None)
        await send({'type': 'websocket.accept', 'subprotocol': chosen, 'headers': [(b'x-accepted', b'yes')]})
        await send({'type': 'websocket.send', 'text': json.dumps({'subprotocols': offered})})
        await _asgi_echo(receive, send)
        return

    await send({'type': 'websocket.accept'})
    if path == '/echo':
        await _asgi_echo(receive, send)
    elif path == '/push':
        for i in range(int(query.get('n', '5'))):
            await send({'type': 'websocket.send', 'text': f'push {i}'})
        await send({'type': 'websocket.send', 'bytes': b'push-bytes'})
        await _asgi_echo(receive, send)
    elif path == '/close':
        await send({'type': 'websocket.send', 'text': 'closing'})
        await send({'type': 'websocket.close', 'code': int(query['code']), 'reason': query.get('reason', '')})
        message = await receive()
        if 'id' in query:
            RECORDED[query['id']] = message
    elif path == '/record':
        RECORDED[query['id']] = await _asgi_echo(receive, send)
    elif path == '/scope':
        await send({'type': 'websocket.send', 'text': json.dumps(_asgi_scope(scope))})
        await _asgi_echo(receive, send)
    else:
        await send({'type': 'websocket.close', 'code': 4404})
