"""Apps that probe asyncio semantics inside request handlers (`--task-impl` tests)."""

import asyncio
import contextvars
import json

import sniffio

REQUEST_MARK = contextvars.ContextVar('request_mark', default=None)
RECORDED = {}


async def _slow_forever():
    await asyncio.sleep(30)


async def _probe(path: str) -> dict:
    if path == '/current-task':
        before = asyncio.current_task()
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        after = asyncio.current_task()
        return {'present': before is not None, 'same': before is after, 'done': before.done()}
    if path == '/sniffio':
        return {'library': sniffio.current_async_library()}
    if path == '/wait-for':
        try:
            await asyncio.wait_for(_slow_forever(), 0.05)
        except asyncio.TimeoutError:
            return {'timed_out': True}
        return {'timed_out': False}
    if path == '/timeout':
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(30)
        except TimeoutError:
            return {'timed_out': True, 'cancelling': asyncio.current_task().cancelling()}
        return {'timed_out': False}
    if path == '/self-cancel':
        task = asyncio.current_task()
        asyncio.get_running_loop().call_later(0.02, task.cancel, 'stop it')
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError as exc:
            task.uncancel()
            return {'cancelled': True, 'message': exc.args[0] if exc.args else None}
        return {'cancelled': False}
    if path == '/cancel-while-running':
        task = asyncio.current_task()
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            task.uncancel()
            return {'cancelled': True}
        return {'cancelled': False}
    if path == '/children':
        results = await asyncio.gather(*(asyncio.sleep(0.001, result=i) for i in range(5)))
        child = asyncio.create_task(asyncio.sleep(0, result='child'))
        return {'gathered': results, 'child': await child}
    if path == '/contextvar':
        seen = REQUEST_MARK.get()
        REQUEST_MARK.set('set-by-an-earlier-request')
        await asyncio.sleep(0)
        return {'seen': seen, 'kept': REQUEST_MARK.get()}
    if path == '/shield':
        inner = asyncio.ensure_future(asyncio.sleep(0.01, result='shielded'))
        return {'value': await asyncio.shield(inner)}
    if path == '/done-callback':
        asyncio.current_task().add_done_callback(lambda t: RECORDED.update(done_callback={'done': t.done()}))
        return {'registered': True}
    if path == '/recorded':
        return RECORDED
    if path == '/boom':
        await asyncio.sleep(0)
        raise RuntimeError('boom from the app')
    return {'path': path}


async def rsgi_app(scope, proto):
    body = json.dumps(await _probe(scope.path))
    proto.response_str(200, [('content-type', 'application/json')], body)


async def asgi_app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            kind = message['type'].rsplit('.', 1)[-1]
            await send({'type': f'{message["type"]}.complete'})
            if kind == 'shutdown':
                return
    body = json.dumps(await _probe(scope['path'])).encode()
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'application/json')]})
    await send({'type': 'http.response.body', 'body': body})
