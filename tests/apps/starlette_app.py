"""A small Starlette app: JSON, path params, streaming, multipart upload, files, a lifespan resource."""

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    resource = {'name': 'starlette-pool', 'opened': True}
    yield {'resource': resource}
    folder = os.environ.get('ASGI_TEST_MARKERS')
    if folder:
        Path(folder, 'starlette-shutdown').write_text('closed')


async def hello(request: Request):
    return JSONResponse(
        {
            'hello': 'world',
            'resource': request.state.resource,
            'path': request.url.path,
            'root_path': request.scope['root_path'],
            'http_version': request.scope['http_version'],
        }
    )


async def item(request: Request):
    return JSONResponse({'item_id': request.path_params['item_id'], 'q': request.query_params.get('q')})


async def echo_json(request: Request):
    return JSONResponse({'received': await request.json()})


async def stream(request: Request):
    count = int(request.query_params.get('count', 10))

    async def lines():
        for i in range(count):
            yield f'line {i}\n'.encode()
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type='text/plain')


async def upload(request: Request):
    async with request.form() as form:
        upload = form['file']
        data = await upload.read()
        return JSONResponse(
            {
                'field': form['field'],
                'filename': upload.filename,
                'content_type': upload.content_type,
                'size': len(data),
                'sha256': hashlib.sha256(data).hexdigest(),
            }
        )


async def file(request: Request):
    return FileResponse(request.query_params['path'])


async def error(request: Request):
    raise RuntimeError('boom from starlette')


app = Starlette(
    routes=[
        Route('/json', hello),
        Route('/items/{item_id:int}', item),
        Route('/echo-json', echo_json, methods=['POST']),
        Route('/stream', stream),
        Route('/upload', upload, methods=['POST']),
        Route('/file', file),
        Route('/error', error),
    ],
    lifespan=lifespan,
)
