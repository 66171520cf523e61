"""The app the metrics tests count requests of: `/error` raises, websockets go to the echo app."""

from tests.apps import ws_apps


async def app(scope, proto):
    if scope.proto == 'ws':
        return await ws_apps.rsgi_app(scope, proto)
    if scope.path == '/error':
        raise RuntimeError('boom, for the metrics')
    body = await proto()
    proto.response_str(200, [('content-type', 'text/plain')], f'ok {len(body)}')
