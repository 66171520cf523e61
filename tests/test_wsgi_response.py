"""`granian.wsgi.Response` and `ResponseIterWrap` driving a WSGI app directly, without a server."""

import sys

import pytest
from granian.wsgi import Response, ResponseIterWrap


def hello_app(environ, start_response):
    start_response('201 Created', [('content-type', 'text/plain'), ('x-one', '1')])
    return [b'hello ', b'world']


class ClosingBody:
    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = 0

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed += 1


def test_response_defaults_before_start_response():
    response = Response()
    assert response.status == 200
    assert response.headers == []


def test_response_keeps_what_the_app_set():
    response = Response()
    body = hello_app({}, response)
    assert response.status == 201
    assert response.headers == [('content-type', 'text/plain'), ('x-one', '1')]
    assert b''.join(body) == b'hello world'


@pytest.mark.parametrize(('line', 'code'), [('200 OK', 200), ('404 Not Found', 404), ('599 ', 599), ('204', 204)])
def test_response_status_is_the_code_of_the_line(line, code):
    response = Response()
    response(line, [])
    assert response.status == code


@pytest.mark.parametrize('line', ['OK', '20 OK', '2000 OK', '200OK', '099 Low', '', ' 200 OK'])
def test_response_rejects_an_invalid_status_line(line):
    with pytest.raises(ValueError, match='invalid status line'):
        Response()(line, [])


def test_response_rejects_a_bytes_status():
    with pytest.raises(TypeError):
        Response()(b'200 OK', [])


def test_second_call_needs_exc_info():
    response = Response()
    response('200 OK', [('a', 'b')])
    with pytest.raises(RuntimeError, match='without exc_info'):
        response('500 Internal Server Error', [])
    assert response.status == 200


def test_exc_info_replaces_the_started_response():
    response = Response()
    response('200 OK', [('a', 'b')])
    try:
        raise ValueError('the app failed while rendering')
    except ValueError:
        response('500 Internal Server Error', [('content-type', 'text/plain')], sys.exc_info())
    assert response.status == 500
    assert response.headers == [('content-type', 'text/plain')]


def test_iter_wrap_iterates_and_closes_the_body():
    body = ClosingBody([b'a', b'b', b'c'])
    wrapped = ResponseIterWrap(body)
    assert wrapped.inner is body
    assert next(wrapped) == b'a'
    assert list(wrapped) == [b'b', b'c']
    wrapped.close()
    assert body.closed == 1


def test_iter_wrap_closes_a_generator_early():
    finished = []

    def generate():
        try:
            yield b'first'
            yield b'second'
        finally:
            finished.append(True)

    wrapped = ResponseIterWrap(generate())
    assert next(wrapped) == b'first'
    wrapped.close()
    assert finished == [True]
    with pytest.raises(StopIteration):
        next(wrapped)


def test_iter_wrap_of_a_body_without_close():
    wrapped = ResponseIterWrap((b'x', b'y'))
    assert b''.join(wrapped) == b'xy'
    wrapped.close()


def test_driving_an_app_end_to_end():
    response = Response()
    body = ResponseIterWrap(hello_app({'REQUEST_METHOD': 'GET'}, response))
    try:
        payload = b''.join(body)
    finally:
        body.close()
    assert (response.status, payload) == (201, b'hello world')
