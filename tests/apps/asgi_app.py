"""ASGI 3 apps with one route per behaviour the tests check.

`app` runs the lifespan protocol (it puts a resource in `state`; with `ASGI_TEST_MARKERS` set to a
folder it writes `startup` and `shutdown` files there). The other callables are lifespan variants.
"""

import asyncio
import json
import os
from pathlib import Path
from urllib.parse import parse_qs

# What happened in requests, keyed by a test-chosen id (read back through `/events?id=`).
EVENTS: dict = {}
# Events a request waits for until the test releases it through `/release?id=`.
GATES: dict = {}

PLAIN = [(b'content-type', b'text/plain')]
# What a misused `send` may raise (anything else escapes and fails the test with a 500).
SEND_ERRORS = (RuntimeError, TypeError, ValueError, OSError)


def _marker(name: str, text: str = '') -> None:
    folder = os.environ.get('ASGI_TEST_MARKERS')
    if folder:
        Path(folder, name).write_text(text)


def _gate(key: str) -> asyncio.Event:
    return GATES.setdefault(key, asyncio.Event())


def _jsonable(value):
    if isinstance(value, bytes):
        return {'bytes': value.decode('latin-1')}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _scope_info(scope: dict) -> dict:
    headers = scope['headers']
    return {
        'keys': sorted(scope),
        'type': scope['type'],
        'asgi': scope['asgi'],
        'http_version': scope['http_version'],
        'method': scope['method'],
        'scheme': scope['scheme'],
        'path': scope['path'],
        'path_type': type(scope['path']).__name__,
        'raw_path': _jsonable(scope['raw_path']),
        'query_string': _jsonable(scope['query_string']),
        'root_path': scope['root_path'],
        'headers_is_list': isinstance(headers, list),
        'headers_pairs_ok': all(
            len(pair) == 2 and isinstance(pair[0], bytes) and isinstance(pair[1], bytes) for pair in headers
        ),
        'headers': [[name.decode('latin-1'), value.decode('latin-1')] for name, value in headers],
        'client': list(scope['client']),
        'client_types': [type(v).__name__ for v in scope['client']],
        'server': list(scope['server']),
        'server_types': [type(v).__name__ for v in scope['server']],
        'state': _jsonable(dict(scope['state'])) if 'state' in scope else None,
        'extensions': scope.get('extensions'),
    }


async def _read_body(receive) -> tuple:
    """The whole request body and the `more_body` flags of the `http.request` messages it came in."""
    body, flags = b'', []
    while True:
        message = await receive()
        assert message['type'] == 'http.request', message
        body += message.get('body', b'')
        flags.append(message.get('more_body', False))
        if not message.get('more_body', False):
            return body, flags


async def _send_json(send, data, status: int = 200) -> None:
    payload = json.dumps(data).encode()
    await send(
        {
            'type': 'http.response.start',
            'status': status,
            'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(payload)).encode())],
        }
    )
    await send({'type': 'http.response.body', 'body': payload})


async def _send_text(send, text: str, status: int = 200, headers=PLAIN) -> None:
    await send({'type': 'http.response.start', 'status': status, 'headers': list(headers)})
    await send({'type': 'http.response.body', 'body': text.encode()})


def _start(status: int = 200, headers=PLAIN) -> dict:
    return {'type': 'http.response.start', 'status': status, 'headers': list(headers)}


def _body(data: bytes = b'', more: bool = False) -> dict:
    return {'type': 'http.response.body', 'body': data, 'more_body': more}


# Invalid `send` sequences: each does what it is named after; what the app sees is reported back.
async def _bad_body_before_start(send):
    await send(_body(b'too early'))


async def _bad_start_twice(send):
    await send(_start())
    await send(_start())


async def _bad_unknown_type(send):
    await send({'type': 'http.response.nonsense'})


async def _bad_non_dict(send):
    await send(['http.response.start', 200])


async def _bad_missing_type(send):
    await send({'status': 200})


async def _bad_header_name_str(send):
    await send({'type': 'http.response.start', 'status': 200, 'headers': [('x-name', b'v')]})


async def _bad_header_value_int(send):
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'x-name', 5)]})


async def _bad_header_not_pair(send):
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'x-name',)]})


async def _bad_body_str(send):
    await send(_start())
    await send({'type': 'http.response.body', 'body': 'text, not bytes'})


async def _bad_status_str(send):
    await send({'type': 'http.response.start', 'status': '200'})


async def _bad_pathsend_before_start(send):
    await send({'type': 'http.response.pathsend', 'path': __file__})


BAD = {
    'body-before-start': _bad_body_before_start,
    'start-twice': _bad_start_twice,
    'unknown-type': _bad_unknown_type,
    'non-dict': _bad_non_dict,
    'missing-type': _bad_missing_type,
    'header-name-str': _bad_header_name_str,
    'header-value-int': _bad_header_value_int,
    'header-not-pair': _bad_header_not_pair,
    'body-str': _bad_body_str,
    'status-str': _bad_status_str,
    'pathsend-before-start': _bad_pathsend_before_start,
}


async def _bad(scope, receive, send, query):
    """Runs one invalid sequence; `raise=1` lets the error out, otherwise the app answers with it."""
    sent_start = {'value': False}

    async def tracking_send(message):
        await send(message)
        if isinstance(message, dict) and message.get('type') == 'http.response.start':
            sent_start['value'] = True

    try:
        await BAD[query['kind']](tracking_send)
    except SEND_ERRORS as exc:
        error = {'type': type(exc).__name__, 'message': str(exc)}
    else:
        error = None
    if query.get('raise') == '1':
        if error is not None:
            raise RuntimeError(f'{error["type"]}: {error["message"]}')
        return
    payload = json.dumps({'error': error}).encode()
    if not sent_start['value']:
        await send(_start(200, [(b'content-type', b'application/json')]))
    await send(_body(payload))


async def _after_complete(send, query):
    await send(_start())
    await send(_body(b'complete'))
    try:
        await send(_body(b'after the end'))
    except SEND_ERRORS as exc:
        EVENTS[query['id']] = {'type': type(exc).__name__, 'message': str(exc)}
    else:
        EVENTS[query['id']] = {'type': None}


async def _stream_until_disconnect(receive, send, query):
    """Streams chunks until `receive()` reports the client gone (bounded), then records what happened."""
    key = query['id']
    record = EVENTS.setdefault(key, {})
    await _read_body(receive)
    gone = asyncio.Event()

    async def watch():
        message = await receive()
        record['received'] = message['type']
        gone.set()

    watcher = asyncio.create_task(watch())
    await send(_start())
    sent = 0
    try:
        while not gone.is_set() and sent < 2000:
            await send(_body(b'x' * 1024, more=True))
            sent += 1
            await asyncio.sleep(0.005)
        await send(_body())
    except SEND_ERRORS as exc:  # recorded for the test: spec 2.3 makes sends to a gone client no-ops
        record['error'] = f'{type(exc).__name__}: {exc}'
    watcher.cancel()
    record['sent'] = sent
    record['done'] = True


async def _stream_ignoring_disconnect(receive, send, query):
    """Sends a bounded stream without ever calling `receive()` for the disconnect."""
    key = query['id']
    record = EVENTS.setdefault(key, {})
    await send(_start())
    try:
        for _ in range(300):
            await send(_body(b'y' * 4096, more=True))
            await asyncio.sleep(0.002)
        await send(_body(b'end'))
    except SEND_ERRORS as exc:
        record['error'] = f'{type(exc).__name__}: {exc}'
    record['done'] = True


async def _hold(receive, send, query):
    """Reads the request, then waits on `receive()` without answering: the client leaves first."""
    key = query['id']
    record = EVENTS.setdefault(key, {})
    await _read_body(receive)
    record['waiting'] = True
    try:
        message = await asyncio.wait_for(receive(), 20)
    except asyncio.TimeoutError:
        record['received'] = 'timeout'
        return
    record['received'] = message['type']


async def _wait_disconnect_after_response(receive, send, query):
    """Answers, then waits on `receive()`: `http.disconnect` comes once the response is complete."""
    key = query['id']
    record = EVENTS.setdefault(key, {})
    await _read_body(receive)
    await _send_text(send, 'answered')
    try:
        message = await asyncio.wait_for(receive(), 20)
    except asyncio.TimeoutError:
        record['received'] = 'timeout'
        return
    record['received'] = message['type']


async def _incremental(send, query):
    """Sends `first`, waits to be released by the test, then `second`."""
    await send(_start())
    await send(_body(b'first;', more=True))
    try:
        await asyncio.wait_for(_gate(query['id']).wait(), 20)
    except asyncio.TimeoutError:
        await send(_body(b'timeout'))
        return
    await send(_body(b'second;', more=True))
    await send(_body(b'third'))


async def http_app(scope, receive, send):
    path = scope['path']
    query = {k: v[0] for k, v in parse_qs(scope['query_string'].decode('latin-1')).items()}
    root = scope.get('root_path', '')
    if root and path.startswith(root + '/'):
        path = path[len(root) :]

    if path.startswith('/scope'):
        return await _send_json(send, _scope_info(scope))
    if path == '/state/mutate':
        state = scope['state']
        state['counter'] = state.get('counter', 0) + 1
        state['added_by_request'] = query.get('tag', 'x')
        return await _send_json(send, _jsonable(dict(state)))
    if path == '/echo':
        body, flags = await _read_body(receive)
        await send(_start(200, [(b'content-type', b'application/octet-stream')]))
        return await send(_body(body))
    if path == '/chunks':
        body, flags = await _read_body(receive)
        return await _send_json(
            send, {'chunks': len(flags), 'total': len(body), 'flags_ok': flags[-1] is False and all(flags[:-1])}
        )
    if path == '/count-chunks':
        # Counts without keeping the body: for large uploads.
        chunks = total = 0
        while True:
            message = await receive()
            assert message['type'] == 'http.request'
            chunks += 1
            total += len(message.get('body', b''))
            if not message.get('more_body', False):
                break
        return await _send_json(send, {'chunks': chunks, 'total': total})
    if path == '/headers':
        headers = [(b'x-repeat', b'one'), (b'x-repeat', b'two'), (b'content-type', b'text/plain')]
        return await _send_text(send, 'headers', headers=headers)
    if path == '/status':
        return await _send_text(send, '', status=int(query['code']))
    if path == '/declared-length':
        # A content-length of the app's own, right or wrong, over a body of `size` bytes.
        headers = [(b'content-length', query['length'].encode())]
        await send(_start(int(query.get('code', 200)), headers))
        return await send(_body(b'x' * int(query.get('size', 0))))
    if path == '/stream':
        count, size = int(query.get('count', 10)), int(query.get('size', 10))
        await send(_start())
        for i in range(count):
            await send(_body(bytes([97 + i % 26]) * size, more=True))
        return await send(_body(b'END'))
    if path == '/stream-no-final-body':
        # The last chunk carries the data and `more_body` omitted (it defaults to False).
        await send(_start())
        await send(_body(b'part1;', more=True))
        return await send({'type': 'http.response.body', 'body': b'part2'})
    if path == '/incremental':
        return await _incremental(send, query)
    if path == '/release':
        _gate(query['id']).set()
        return await _send_text(send, 'released')
    if path == '/pathsend':
        await send(_start(200, [(b'content-type', b'application/octet-stream')]))
        return await send({'type': 'http.response.pathsend', 'path': query['path']})
    if path == '/bad':
        return await _bad(scope, receive, send, query)
    if path == '/after-complete':
        return await _after_complete(send, query)
    if path == '/raise':
        raise RuntimeError('boom from the asgi app')
    if path == '/raise-after-start':
        await send(_start())
        raise RuntimeError('boom after start')
    if path == '/raise-midstream':
        await send(_start())
        await send(_body(b'partial;', more=True))
        raise RuntimeError('boom mid-stream')
    if path == '/return-midstream':
        await send(_start())
        await send(_body(b'partial;', more=True))
        return None
    if path == '/noresponse':
        return None
    if path == '/stream-until-disconnect':
        return await _stream_until_disconnect(receive, send, query)
    if path == '/stream-ignoring-disconnect':
        return await _stream_ignoring_disconnect(receive, send, query)
    if path == '/upload-until-disconnect':
        record = EVENTS.setdefault(query['id'], {})
        record['types'] = []
        while True:
            message = await receive()
            record['types'].append(message['type'])
            record['received'] = record.get('received', 0) + len(message.get('body', b''))
            if message['type'] == 'http.disconnect' or not message.get('more_body', False):
                break
        record['done'] = True
        if message['type'] != 'http.disconnect':
            await _send_text(send, 'complete upload')
        return None
    if path == '/hold':
        return await _hold(receive, send, query)
    if path == '/wait-disconnect':
        return await _wait_disconnect_after_response(receive, send, query)
    if path == '/events':
        return await _send_json(send, EVENTS.get(query['id'], {}))
    return await _send_text(send, 'Hello, world!')


async def _lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message['type'] == 'lifespan.startup':
            scope['state']['resource'] = {'name': 'database', 'connected': True}
            scope['state']['counter'] = 0
            _marker('startup', 'started')
            await send({'type': 'lifespan.startup.complete'})
        elif message['type'] == 'lifespan.shutdown':
            _marker('shutdown', 'stopped')
            await send({'type': 'lifespan.shutdown.complete'})
            return


async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        _marker('lifespan-called', 'yes')
        return await _lifespan(scope, receive, send)
    return await http_app(scope, receive, send)


async def no_lifespan(scope, receive, send):
    """An app that does not support lifespan: it raises on the lifespan scope, as many do."""
    if scope['type'] != 'http':
        raise ValueError(f'unsupported scope type {scope["type"]}')
    return await http_app(scope, receive, send)


async def failing_startup(scope, receive, send):
    if scope['type'] == 'lifespan':
        message = await receive()
        assert message['type'] == 'lifespan.startup'
        await send({'type': 'lifespan.startup.failed', 'message': 'cannot reach the database (marker-4711)'})
        return None
    return await http_app(scope, receive, send)


async def failing_shutdown(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            else:
                await send({'type': 'lifespan.shutdown.failed', 'message': 'could not flush (marker-0815)'})
                return None
    return await http_app(scope, receive, send)
