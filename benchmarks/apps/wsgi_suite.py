"""WSGI apps of the benchmark suite, one callable per scenario (`apps.wsgi_suite:NAME`)."""

BODY_10K = b'x' * 10 * 1024
BODY_1M = b'x' * 1024 * 1024
CHUNK = b'x' * 1024
CHUNKS = 32


def _fixed(start_response, body: bytes, content_type: str = 'application/octet-stream'):
    start_response('200 OK', [('content-type', content_type), ('content-length', str(len(body)))])
    return [body]


def body_10k(environ, start_response):
    return _fixed(start_response, BODY_10K)


def body_1m(environ, start_response):
    return _fixed(start_response, BODY_1M)


def echo(environ, start_response):
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    return _fixed(start_response, body)


def upload(environ, start_response):
    """Reads the whole request body, answers its size."""
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    return _fixed(start_response, str(len(body)).encode(), 'text/plain')


def _chunks():
    for _ in range(CHUNKS):
        yield CHUNK


def stream(environ, start_response):
    """32 chunks of 1 KiB, no content-length: a chunked response (HTTP/1.1)."""
    start_response('200 OK', [('content-type', 'application/octet-stream')])
    return _chunks()
