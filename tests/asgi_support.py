"""Helpers shared by the ASGI test modules."""

from .rsgi_support import http_client

ASGI_APP = 'tests.apps.asgi_app:app'


def assert_still_serving(url: str) -> None:
    for proto in ('h1', 'h2'):
        with http_client(url, proto) as c:
            response = c.get('/')
            assert response.status_code == 200
            assert response.http_version == c.expected_version
            assert response.text == 'Hello, world!'
