"""A plain WSGI (PEP 3333) app, as a user of granian 2.8.7 would write it (no framework).

It does not use the `write()` callable: granian 2.8.7's start_response returns None, so an app for it
cannot.

tests/test_reference_apps.py runs it on ours and on the reference granian 2.8.7. Routes:

  /environ                  the environ's CGI and wsgi.* keys as JSON
  /input                    wsgi.input read in pieces of `piece` bytes (query), echoed, digest in a header
  /iterable                 a list of several byte strings
  /generator?id=K           an iterable whose parts come from a generator; its close() is recorded under K
  /plain-generator?id=K&n=N a generator function's N parts; records under K how many it sent once it ends
  /recorded?id=K            what was recorded under K (JSON, null when nothing yet)
"""

import hashlib
import json
import threading
from urllib.parse import parse_qs

LOCK = threading.Lock()
RECORDED: dict = {}

ENVIRON_KEYS = (
    'REQUEST_METHOD',
    'SCRIPT_NAME',
    'PATH_INFO',
    'QUERY_STRING',
    'CONTENT_TYPE',
    'CONTENT_LENGTH',
    'SERVER_NAME',
    'SERVER_PORT',
    'SERVER_PROTOCOL',
    'REMOTE_ADDR',
    'HTTP_HOST',
    'HTTP_X_ONE',
    'wsgi.url_scheme',
    'wsgi.multithread',
    'wsgi.multiprocess',
    'wsgi.run_once',
)


class RecordingIterable:
    """Response parts from a generator; the server must call close() once it is done with them."""

    def __init__(self, key: str, parts: list):
        self.key = key
        self.generator = (part for part in parts)

    def __iter__(self):
        return self.generator

    def close(self) -> None:
        self.generator.close()
        with LOCK:
            RECORDED.setdefault(self.key, []).append('closed')


def numbered_parts(key: str, count: int):
    """A generator response; records how far it got once it ends."""
    sent = 0
    try:
        for i in range(count):
            yield f'part-{i};'.encode()
            sent += 1
    finally:
        with LOCK:
            RECORDED.setdefault(key, []).append(f'sent {sent}')


def json_response(start_response, data) -> list:
    body = json.dumps(data).encode()
    start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ['PATH_INFO']
    query = {key: values[0] for key, values in parse_qs(environ.get('QUERY_STRING', '')).items()}

    if path == '/environ':
        seen = {key: environ.get(key) for key in ENVIRON_KEYS}
        seen['wsgi.version'] = list(environ['wsgi.version'])
        seen['has_input'] = hasattr(environ['wsgi.input'], 'read')
        seen['has_errors'] = hasattr(environ['wsgi.errors'], 'write')
        seen['all_str'] = all(isinstance(key, str) for key in environ)
        return json_response(start_response, seen)

    if path == '/own-server':
        start_response('200 OK', [('Server', 'reference-app')])
        return [b'named']

    if path == '/input':
        stream = environ['wsgi.input']
        remaining = int(environ.get('CONTENT_LENGTH') or 0)
        piece = int(query.get('piece', '1000'))
        parts = []
        while remaining > 0:
            data = stream.read(min(piece, remaining))
            if not data:
                break
            parts.append(data)
            remaining -= len(data)
        body = b''.join(parts)
        start_response(
            '200 OK',
            [
                ('Content-Type', 'application/octet-stream'),
                ('X-Sha256', hashlib.sha256(body).hexdigest()),
                ('X-Pieces', str(len(parts))),
            ],
        )
        return [body]

    if path == '/iterable':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'first;', b'second;', b'', b'third']

    if path == '/generator':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return RecordingIterable(query['id'], [b'gen-1;', b'gen-2;', b'gen-3'])

    if path == '/plain-generator':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return numbered_parts(query['id'], int(query.get('n', '3')))

    if path == '/recorded':
        with LOCK:
            value = RECORDED.get(query['id'])
        return json_response(start_response, value)

    start_response('404 Not Found', [('Content-Type', 'text/plain')])
    return [b'not found']
