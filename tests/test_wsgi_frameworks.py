"""Real WSGI frameworks under the server: Flask, and Django mounted under a URL path prefix."""

import hashlib
import os
from contextlib import contextmanager

import httpx
import pytest

from .rsgi_support import TIMEOUT, wait_for
from .server_support import ServerPool

FLASK = 'tests.apps.flask_app:app'
DJANGO = 'tests.apps.django_wsgi.wsgi:application'


@contextmanager
def framework_server(target: str, workdir, *args: str):
    """The app served over WSGI, with a file to download (its bytes in `srv.download`)."""
    download = workdir / 'download.bin'
    download.write_bytes(os.urandom(512 * 1024 + 3))
    env = {'WSGI_TEST_DOWNLOAD': str(download), 'DJANGO_SETTINGS_MODULE': 'tests.apps.django_wsgi.settings'}
    with ServerPool(workdir) as pool:
        srv = pool.start(target, *args, interface='wsgi', env=env)
        srv.download = download.read_bytes()
        yield srv


@pytest.fixture(scope='module')
def flask_server(tmp_path_factory):
    with framework_server(FLASK, tmp_path_factory.mktemp('flask')) as srv:
        yield srv


@pytest.fixture(scope='module')
def django_server(tmp_path_factory):
    with framework_server(DJANGO, tmp_path_factory.mktemp('django-wsgi'), '--url-path-prefix', '/dj') as srv:
        yield srv


@pytest.fixture(params=['h1', 'h2'])
def proto(request):
    return request.param


def make_client(url: str, proto: str) -> httpx.Client:
    h2 = proto == 'h2'
    c = httpx.Client(base_url=url, timeout=TIMEOUT, http1=not h2, http2=h2)
    c.expected_version = 'HTTP/2' if h2 else 'HTTP/1.1'
    return c


@pytest.fixture
def flask(flask_server, proto):
    with make_client(flask_server.url, proto) as c:
        yield c


@pytest.fixture
def django(django_server, proto):
    with make_client(django_server.url + '/dj', proto) as c:
        yield c


def check(response: httpx.Response, c: httpx.Client, status: int = 200) -> httpx.Response:
    assert response.http_version == c.expected_version
    assert response.status_code == status, response.text
    return response


def post_form(c: httpx.Client, path: str) -> None:
    data = os.urandom(1024 * 1024 + 17)
    files = {'file': ('report.bin', data, 'application/octet-stream')}
    response = check(c.post(path, data={'name': 'héllo value', 'tag': ['a', 'b']}, files=files), c)
    assert response.json() == {
        'name': 'héllo value',
        'tags': ['a', 'b'],
        'filename': 'report.bin',
        'content_type': 'application/octet-stream',
        'size': len(data),
        'sha256': hashlib.sha256(data).hexdigest(),
    }


def check_download(c: httpx.Client, path: str, expected: bytes) -> None:
    response = check(c.get(path), c)
    assert response.content == expected
    assert response.headers['content-length'] == str(len(expected))
    assert 'attachment' in response.headers['content-disposition']
    assert 'data.bin' in response.headers['content-disposition']


def read_stream(c: httpx.Client, path: str) -> tuple:
    with c.stream('GET', path) as response:
        check(response, c)
        pieces = list(response.iter_bytes())
        headers = response.headers
    return b''.join(pieces), headers


# -- Flask ------------------------------------------------------------------------------------------------------


def test_flask_json(flask):
    info = check(flask.get('/json', params={'q': 'x y'}), flask).json()
    assert info == {
        'hello': 'flask',
        'path': '/json',
        'script_root': '',
        'args': {'q': 'x y'},
        'user_agent': f'python-httpx/{httpx.__version__}',
        'protocol': flask.expected_version,
    }
    response = check(flask.post('/json', json={'a': [1, 2], 'b': 'é'}), flask, 201)
    assert response.json() == {'received': {'a': [1, 2], 'b': 'é'}, 'content_type': 'application/json'}


def test_flask_form_post(flask):
    post_form(flask, '/form')


def test_flask_streaming(flask):
    body, headers = read_stream(flask, '/stream?count=500')
    assert body.decode() == ''.join(f'line {i} of /stream\n' for i in range(500))
    assert 'content-length' not in headers


def test_flask_file_download(flask, flask_server):
    check_download(flask, '/download', flask_server.download)


def test_flask_not_found_and_error(flask, flask_server):
    assert check(flask.get('/missing'), flask, 404)
    mark = len(flask_server.log)
    check(flask.get('/error'), flask, 500)
    # Flask handles the exception itself and logs it to wsgi.errors.
    log = wait_for(lambda: 'boom from flask' in flask_server.log[mark:] and flask_server.log[mark:], what='log')
    assert 'RuntimeError: boom from flask' in log


# -- Django -----------------------------------------------------------------------------------------------------


def test_django_json_under_prefix(django):
    info = check(django.get('/json'), django).json()
    assert info['hello'] == 'django'
    assert info['path'] == '/dj/json'
    assert info['path_info'] == '/json'
    assert info['script_name'] == '/dj'
    assert info['method'] == 'GET'
    assert info['user_agent'] == f'python-httpx/{httpx.__version__}'
    assert info['protocol'] == django.expected_version
    assert check(django.get('/items/42', params={'q': 'z'}), django).json() == {'item_id': 42, 'q': 'z'}
    response = check(django.post('/json', json={'k': 'v'}), django, 201)
    assert response.json() == {'received': {'k': 'v'}, 'content_type': 'application/json'}


def test_django_form_post(django):
    post_form(django, '/form')


def test_django_streaming(django):
    body, headers = read_stream(django, '/stream?count=500')
    assert body.decode() == ''.join(f'line {i}\n' for i in range(500))
    assert 'content-length' not in headers


def test_django_file_download(django, django_server):
    check_download(django, '/download', django_server.download)


def test_django_not_found_and_error(django):
    check(django.get('/missing'), django, 404)
    check(django.get('/error'), django, 500)
