async def app(scope, receive, send):
    if scope['type'] != 'http':
        return
    body = b''
    more = True
    while more:
        message = await receive()
        body += message.get('body', b'')
        more = message.get('more_body', False)
    await send(
        {'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'application/octet-stream')]}
    )
    await send({'type': 'http.response.body', 'body': body})
