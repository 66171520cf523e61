"""Real ASGI frameworks under the server: Starlette (with its lifespan) and Django (which has none)."""

import hashlib
import os
import signal

import pytest

from .asgi_support import http_client
from .rsgi_support import wait_for
from .server_support import ServerPool

STARLETTE = 'tests.apps.starlette_app:app'
DJANGO = 'tests.apps.django_app.asgi:application'


@pytest.fixture(scope='module')
def starlette_server(tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp('starlette')) as pool:
        yield pool.start(STARLETTE, interface='asgi')


@pytest.fixture(scope='module')
def django_server(tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp('django')) as pool:
        yield pool.start(DJANGO, interface='asgi')


@pytest.fixture(params=['h1', 'h2'])
def proto(request):
    return request.param


@pytest.fixture
def starlette(starlette_server, proto):
    with http_client(starlette_server.url, proto) as c:
        yield c


@pytest.fixture
def django(django_server, proto):
    with http_client(django_server.url, proto) as c:
        yield c


def upload_file(c, path: str) -> tuple:
    data = os.urandom(1024 * 1024 + 17)
    files = {'file': ('report.bin', data, 'application/octet-stream')}
    response = c.post(path, data={'field': 'héllo value'}, files=files)
    assert response.http_version == c.expected_version
    assert response.status_code == 200, response.text
    return response.json(), data


def check_upload(info: dict, data: bytes) -> None:
    assert info['field'] == 'héllo value'
    assert info['filename'] == 'report.bin'
    assert info['content_type'] == 'application/octet-stream'
    assert info['size'] == len(data)
    assert info['sha256'] == hashlib.sha256(data).hexdigest()


# -- Starlette -----------------------------------------------------------------------------------------------


def test_starlette_json_and_lifespan_resource(starlette):
    response = starlette.get('/json')
    assert response.status_code == 200
    assert response.http_version == starlette.expected_version
    assert response.headers['content-type'] == 'application/json'
    info = response.json()
    assert info['hello'] == 'world'
    assert info['resource'] == {'name': 'starlette-pool', 'opened': True}
    assert info['http_version'] == starlette.scope_version
    assert info['path'] == '/json'


def test_starlette_path_params_and_404(starlette):
    assert starlette.get('/items/42', params={'q': 'x'}).json() == {'item_id': 42, 'q': 'x'}
    assert starlette.get('/items/not-a-number').status_code == 404
    assert starlette.get('/nowhere').status_code == 404


def test_starlette_json_body(starlette):
    payload = {'list': list(range(1000)), 'text': 'ünïcode'}
    assert starlette.post('/echo-json', json=payload).json() == {'received': payload}


def test_starlette_streaming_response(starlette):
    response = starlette.get('/stream', params={'count': 500})
    assert response.status_code == 200
    assert response.text == ''.join(f'line {i}\n' for i in range(500))


def test_starlette_multipart_upload(starlette):
    info, data = upload_file(starlette, '/upload')
    check_upload(info, data)


def test_starlette_file_response_uses_pathsend(starlette, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / 'served.bin'
    path.write_bytes(data)
    response = starlette.get('/file', params={'path': str(path)})
    assert response.status_code == 200
    assert response.content == data
    assert response.headers['content-length'] == str(len(data))


def test_starlette_error_gives_500_and_traceback(starlette, starlette_server):
    mark = len(starlette_server.log)
    assert starlette.get('/error').status_code == 500
    log = wait_for(
        lambda: 'boom from starlette' in starlette_server.log[mark:] and starlette_server.log[mark:], what='log'
    )
    assert 'Traceback' in log


def answered_once(server) -> None:
    """A worker answered: it ran the app's lifespan startup first, so any lifespan warning is logged by now."""
    with http_client(server.url, 'h1') as c:
        assert c.get('/json').status_code == 200


def test_starlette_served_without_lifespan_warnings(starlette_server):
    answered_once(starlette_server)
    assert 'lifespan' not in starlette_server.log.lower()


def test_starlette_url_path_prefix_and_shutdown(start_server, tmp_path):
    markers = tmp_path / 'markers'
    markers.mkdir()
    srv = start_server(
        STARLETTE, '--url-path-prefix', '/api', interface='asgi', env={'ASGI_TEST_MARKERS': str(markers)}
    )
    for proto in ('h1', 'h2'):
        with http_client(srv.url, proto) as c:
            # Starlette routes on the path below root_path.
            info = c.get('/api/json').json()
            assert info['root_path'] == '/api'
            assert info['resource'] == {'name': 'starlette-pool', 'opened': True}
            assert c.get('/api/items/7').json() == {'item_id': 7, 'q': None}
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=20) == 0, srv.log
    assert (markers / 'starlette-shutdown').read_text() == 'closed'


# -- Django ------------------------------------------------------------------------------------------------


def test_django_json_and_ready_resource(django):
    response = django.get('/json', headers={'user-agent': 'tests/1.0'})
    assert response.status_code == 200
    assert response.http_version == django.expected_version
    assert response.headers['content-type'] == 'application/json'
    assert response.json() == {
        'hello': 'django',
        'resource': {'name': 'django-pool', 'ready': True},
        'path': '/json',
        'method': 'GET',
        'user_agent': 'tests/1.0',
    }


def test_django_sync_view_and_404(django):
    assert django.get('/items/42', params={'q': 'x'}).json() == {'item_id': 42, 'q': 'x'}
    assert django.get('/nowhere').status_code == 404


def test_django_request_body(django):
    data = os.urandom(3 * 1024 * 1024 + 5)
    response = django.post('/echo', content=data)
    assert response.status_code == 200
    assert response.content == data


def test_django_streaming_response(django):
    response = django.get('/stream', params={'count': 500})
    assert response.status_code == 200
    assert response.text == ''.join(f'line {i}\n' for i in range(500))


def test_django_multipart_upload(django):
    info, data = upload_file(django, '/upload')
    check_upload(info, data)


def test_django_error_is_its_own_500(django):
    assert django.get('/error').status_code == 500
    assert django.get('/json').status_code == 200


def test_django_served_with_one_lifespan_warning(django_server):
    answered_once(django_server)
    log_lines = django_server.log.splitlines()
    lines = [i for i, line in enumerate(log_lines) if 'lifespan' in line.lower()]
    assert len(lines) == 1, django_server.log
    warning = lines[0]
    assert 'WARN' in log_lines[warning].upper()
    # One line: no traceback comes with it.
    assert not any(line.startswith('Traceback') for line in log_lines[: warning + 2]), django_server.log
