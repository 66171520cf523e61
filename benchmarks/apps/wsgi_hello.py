def app(environ, start_response):
    start_response('200 OK', [('content-type', 'text/plain')])
    return [b'Hello, world!']
