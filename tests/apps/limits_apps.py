"""Apps that read the whole request body and say so on stdout, one per interface: the limit
tests read the log to tell whether an app ran and whether it got a whole body."""

from tests.apps.lifespan import complete_lifespan


async def rsgi_app(scope, proto):
    print(f'app called {scope.path}', flush=True)
    try:
        body = await proto()
    except Exception as exc:
        print(f'read failed: {type(exc).__name__}', flush=True)
        raise
    print(f'read complete {len(body)}', flush=True)
    proto.response_str(200, [], str(len(body)))


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        await complete_lifespan(receive, send)
        return
    print(f'app called {scope["path"]}', flush=True)
    body = b''
    while True:
        message = await receive()
        if message['type'] == 'http.disconnect':
            print('read failed: disconnect', flush=True)
            return
        body += message.get('body', b'')
        if not message.get('more_body'):
            break
    print(f'read complete {len(body)}', flush=True)
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': str(len(body)).encode()})


def wsgi_app(environ, start_response):
    print(f'app called {environ["PATH_INFO"]}', flush=True)
    try:
        body = environ['wsgi.input'].read()
    except OSError as exc:
        print(f'read failed: {type(exc).__name__}', flush=True)
        raise
    print(f'read complete {len(body)}', flush=True)
    start_response('200 OK', [('content-type', 'text/plain')])
    return [str(len(body)).encode()]
