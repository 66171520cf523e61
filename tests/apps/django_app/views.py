import asyncio
import hashlib

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from .apps import RESOURCE


async def json_view(request):
    return JsonResponse(
        {
            'hello': 'django',
            'resource': RESOURCE,
            'path': request.path,
            'method': request.method,
            'user_agent': request.headers.get('user-agent'),
        }
    )


def item(request, item_id):
    """A sync view: Django runs it in a thread."""
    return JsonResponse({'item_id': item_id, 'q': request.GET.get('q')})


async def echo(request):
    return HttpResponse(request.body, content_type='application/octet-stream')


async def stream(request):
    count = int(request.GET.get('count', 10))

    async def lines():
        for i in range(count):
            yield f'line {i}\n'.encode()
            await asyncio.sleep(0)

    return StreamingHttpResponse(lines(), content_type='text/plain')


def upload(request):
    upload = request.FILES['file']
    data = upload.read()
    return JsonResponse(
        {
            'field': request.POST['field'],
            'filename': upload.name,
            'content_type': upload.content_type,
            'size': len(data),
            'sha256': hashlib.sha256(data).hexdigest(),
        }
    )


async def error(request):
    raise RuntimeError('boom from django')
