"""A plain WSGI (PEP 3333) app exercising the environ, start_response, write(), wsgi.input,
wsgi.file_wrapper and response iteration. Per-test state lives in this (single worker)
process, keyed by ids the tests choose, and is read back through routes."""

import hashlib
import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

LOCK = threading.Lock()
# key -> list of what happened (close() calls, re-raise checks, ...).
RECORDS: dict = {}
EVENTS: dict = {}
ACTIVE = {'now': 0}


def record(key: str, what) -> None:
    with LOCK:
        RECORDS.setdefault(key, []).append(what)


def event(key: str) -> threading.Event:
    with LOCK:
        return EVENTS.setdefault(key, threading.Event())


def thread_name() -> str:
    """The OS name of the current thread (Python only knows foreign threads as Dummy-N)."""
    try:
        return Path(f'/proc/self/task/{threading.get_native_id()}/comm').read_text().strip()
    except OSError:
        return ''


def os_thread_names() -> list:
    names = []
    for task in Path('/proc/self/task').iterdir():
        try:
            names.append((task / 'comm').read_text().strip())
        except OSError:
            pass
    return names


def vm_hwm_kib() -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    return -1


def json_response(start_response, data, status='200 OK', headers=()):
    body = json.dumps(data).encode()
    start_response(status, [('content-type', 'application/json'), *headers])
    return [body]


def text_response(start_response, text, status='200 OK'):
    start_response(status, [('content-type', 'text/plain')])
    return [text.encode() if isinstance(text, str) else text]


class Recorded:
    """An iterable recording close() under `key`; raises at chunk `fail_at` when given."""

    def __init__(self, key, chunks, fail_at=None, gate=None):
        self.key = key
        self.chunks = chunks
        self.fail_at = fail_at
        self.gate = gate

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError(f'iteration failed {self.key}')
            if self.gate is not None and i == self.gate[0]:
                self.gate[1]()
            yield chunk

    def close(self):
        record(self.key, 'closed')


class RecordingFileIO(io.FileIO):
    """A real file that records its reads and its close()."""

    def __init__(self, path, key):
        super().__init__(path, 'rb')
        self.key = key

    def read(self, size=-1):
        record(self.key, 'read')
        return super().read(size)

    def close(self):
        if not self.closed:
            record(self.key, 'closed')
        super().close()


class RecordingBytesIO(io.BytesIO):
    def __init__(self, data, key):
        super().__init__(data)
        self.key = key

    def close(self):
        record(self.key, 'closed')
        super().close()


def environ_dump(environ) -> dict:
    out = {}
    for key, value in environ.items():
        if isinstance(value, (str, int, bool)) or value is None:
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = f'<{type(value).__name__}>'
    errors = environ['wsgi.errors']
    out['errors_api'] = all(callable(getattr(errors, m, None)) for m in ('write', 'writelines', 'flush'))
    stream = environ['wsgi.input']
    out['input_api'] = all(callable(getattr(stream, m, None)) for m in ('read', 'readline', 'readlines', '__iter__'))
    out['file_wrapper_callable'] = callable(environ.get('wsgi.file_wrapper'))
    out['thread_name'] = thread_name()
    out['on_main_thread'] = threading.get_ident() == threading.main_thread().ident
    return out


def app(environ, start_response):
    path = environ['PATH_INFO']
    query = {k: v[0] for k, v in parse_qs(environ['QUERY_STRING'], keep_blank_values=True).items()}
    key = query.get('key', '')

    if path == '/':
        return text_response(start_response, 'Hello, world!')

    if path == '/environ' or path.startswith('/environ/') or 'dump' in query:
        if query.get('errors'):
            environ['wsgi.errors'].write(f'wsgi.errors says {query["errors"]}\n')
            environ['wsgi.errors'].writelines([f'and again {query["errors"]}\n'])
            environ['wsgi.errors'].flush()
        return json_response(start_response, environ_dump(environ))

    if path == '/pid':
        return text_response(start_response, str(os.getpid()))

    if path == '/records':
        with LOCK:
            return json_response(start_response, RECORDS.get(key, []))

    if path == '/set':
        event(key).set()
        return text_response(start_response, 'set')

    # -- the blocking pool -------------------------------------------------------------

    if path == '/hold':
        # Waits for the file `gate` to exist; `arrived` (a directory) gets one entry per request.
        with LOCK:
            ACTIVE['now'] += 1
            active = ACTIVE['now']
        try:
            Path(query['arrived'], f'{threading.get_ident()}-{time.monotonic_ns()}').touch()
            deadline = time.monotonic() + 20
            while not os.path.exists(query['gate']) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            with LOCK:
                ACTIVE['now'] -= 1
        return json_response(
            start_response, {'ident': threading.get_ident(), 'thread_name': thread_name(), 'active': active}
        )

    if path == '/threads':
        names = os_thread_names()
        return json_response(
            start_response,
            {
                'blocking': sum(1 for n in names if n.startswith('granian-blocki')),
                'names': names,
                'python_active_count': threading.active_count(),
            },
        )

    # -- wsgi.input ---------------------------------------------------------------------

    if path == '/echo':
        body = environ['wsgi.input'].read()
        start_response(
            '200 OK',
            [
                ('content-type', 'application/octet-stream'),
                ('x-content-length', environ.get('CONTENT_LENGTH', '<absent>')),
                ('x-content-type', environ.get('CONTENT_TYPE', '<absent>')),
            ],
        )
        return [body]

    if path == '/input/read-n':
        size = int(query.get('n', '65536'))
        digest = hashlib.sha256()
        total = biggest = reads = 0
        stream = environ['wsgi.input']
        while True:
            chunk = stream.read(size)
            if not chunk:
                break
            reads += 1
            total += len(chunk)
            biggest = max(biggest, len(chunk))
            digest.update(chunk)
        return json_response(
            start_response,
            {
                'total': total,
                'sha256': digest.hexdigest(),
                'biggest': biggest,
                'reads': reads,
                'pid': os.getpid(),
                'vm_hwm_kib': vm_hwm_kib(),
            },
        )

    if path == '/input/mixed':
        stream = environ['wsgi.input']
        out = {
            'read3': stream.read(3).decode('latin-1'),
            'readline': stream.readline().decode('latin-1'),
            'readline_limited': stream.readline(4).decode('latin-1'),
            'readline_rest': stream.readline().decode('latin-1'),
            'read0': stream.read(0).decode('latin-1'),
            'readlines': [line.decode('latin-1') for line in stream.readlines()],
            'after_eof': stream.read().decode('latin-1'),
            'readline_after_eof': stream.readline().decode('latin-1'),
        }
        return json_response(start_response, out)

    if path == '/input/iter':
        return json_response(start_response, [line.decode('latin-1') for line in environ['wsgi.input']])

    if path == '/input/readlines-hint':
        lines = environ['wsgi.input'].readlines(int(query['hint']))
        rest = environ['wsgi.input'].read()
        return json_response(start_response, {'lines': [x.decode() for x in lines], 'rest': rest.decode()})

    # -- start_response and write() ---------------------------------------------------------

    if path == '/sr/twice':
        start_response('200 OK', [('content-type', 'text/plain')])
        try:
            start_response('201 Created', [])
        except Exception as exc:  # noqa: BLE001
            return [f'raised {type(exc).__name__}'.encode()]
        return [b'did not raise']

    if path == '/sr/exc-before-sent':
        start_response('200 OK', [('x-first', '1')])
        try:
            raise ValueError('replaced')
        except ValueError:
            start_response('503 Service Unavailable', [('x-second', '2')], sys.exc_info())
        return [b'replaced body']

    if path == '/sr/exc-after-sent':
        write = start_response('200 OK', [('content-type', 'text/plain')])
        write(b'partial;')
        try:
            raise ValueError(f'too late {key}')
        except ValueError as exc:
            original = exc
            try:
                start_response('500 Internal Server Error', [], sys.exc_info())
            except ValueError as again:
                record(key, 'reraised-same' if again is original else 'reraised-other')
            else:
                record(key, 'returned')
        return [b'rest']

    if path == '/sr/status':
        return text_response(start_response, 'custom', status=query['status'])

    if path == '/sr/headers':
        start_response('200 OK', [('x-multi', 'a'), ('x-multi', 'b'), ('content-type', 'text/plain')])
        return [b'headers']

    if path == '/write':
        write = start_response('200 OK', [('content-type', 'text/plain')])
        write(b'one,')
        write(b'two,')
        return Recorded(key, [b'three,', b'four'])

    if path == '/write-only':
        write = start_response('200 OK', [('content-type', 'text/plain')])
        for i in range(5):
            write(f'{i};'.encode())
        return []

    # -- response iteration ------------------------------------------------------------------

    if path == '/list':
        start_response('200 OK', [('content-type', 'text/plain')])
        return [b'a', b'b', b'c']

    if path == '/empty':
        start_response('204 No Content', [])
        return []

    if path == '/gen':
        count = int(query.get('n', '3'))
        start_response('200 OK', [('content-type', 'text/plain')])
        return (f'{i};'.encode() for i in range(count))

    if path == '/stream-gated':
        # Blocks after chunk `after` until the test sets the event (or 3 s pass).
        count = int(query.get('n', '10000'))
        after = int(query.get('after', '1'))

        def chunks():
            for i in range(count):
                if i == after:
                    yield b'SET|' if event(key).wait(3) else b'TIMEOUT|'
                yield b'x' * 16

        start_response('200 OK', [('content-type', 'application/octet-stream')])
        return Recorded(key, chunks())

    if path == '/stream-endless':
        start_response('200 OK', [('content-type', 'application/octet-stream')])

        def chunks():
            for _ in range(100_000):
                yield b'z' * 65536
            record(key, 'exhausted')

        return Recorded(key, chunks())

    if path == '/closing':
        start_response('200 OK', [('content-type', 'text/plain')])
        return Recorded(key, [b'closed ', b'properly'])

    if path == '/closing-single':
        start_response('200 OK', [('content-type', 'text/plain')])
        return Recorded(key, [b'single'])

    # -- errors ---------------------------------------------------------------------------

    if path == '/error/before-start':
        raise RuntimeError(f'failed before start_response {key}')

    if path == '/error/after-start':
        start_response('200 OK', [('content-type', 'text/plain')])
        raise RuntimeError(f'failed after start_response {key}')

    if path == '/error/first-chunk':
        start_response('200 OK', [('content-type', 'text/plain')])
        return Recorded(key, [b'never'], fail_at=0)

    if path == '/error/mid-stream':
        start_response('200 OK', [('content-type', 'text/plain')])
        return Recorded(key, [b'first;', b'second;', b'third;'], fail_at=2)

    if path == '/error/after-write':
        write = start_response('200 OK', [('content-type', 'text/plain')])
        write(b'written;')
        raise RuntimeError(f'failed after write {key}')

    if path == '/error/no-start':
        return [b'no start_response']

    if path == '/error/bad-chunk':
        start_response('200 OK', [('content-type', 'text/plain')])
        return Recorded(key, ['a str, not bytes'])

    if path == '/error/close-raises':

        class CloseRaises:
            def __iter__(self):
                yield b'body'

            def close(self):
                raise RuntimeError(f'close failed {key}')

        start_response('200 OK', [('content-type', 'text/plain')])
        return CloseRaises()

    # -- wsgi.file_wrapper ----------------------------------------------------------------

    if path == '/file':
        handle = RecordingFileIO(query['path'], key)
        if 'offset' in query:
            handle.seek(int(query['offset']))
        start_response('200 OK', [('content-type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](handle)

    if path == '/file-bytesio':
        data = bytes(range(256)) * int(query.get('repeat', '100'))
        start_response('200 OK', [('content-type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](RecordingBytesIO(data, key), int(query.get('blksize', '1000')))

    return text_response(start_response, 'not found', status='404 Not Found')
