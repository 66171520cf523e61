import hashlib
import json
import os
import threading

from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def json_view(request):
    if request.method == 'POST':
        return JsonResponse({'received': json.loads(request.body), 'content_type': request.content_type}, status=201)
    return JsonResponse(
        {
            'hello': 'django',
            'path': request.path,
            'path_info': request.path_info,
            'script_name': request.META['SCRIPT_NAME'],
            'method': request.method,
            'user_agent': request.headers.get('user-agent'),
            'protocol': request.META['SERVER_PROTOCOL'],
            'thread': threading.current_thread().name,
        }
    )


def item(request, item_id):
    return JsonResponse({'item_id': item_id, 'q': request.GET.get('q')})


@csrf_exempt
def form(request):
    if request.method != 'POST':
        return HttpResponse(status=405)
    upload = request.FILES['file']
    data = upload.read()
    return JsonResponse(
        {
            'name': request.POST['name'],
            'tags': request.POST.getlist('tag'),
            'filename': upload.name,
            'content_type': upload.content_type,
            'size': len(data),
            'sha256': hashlib.sha256(data).hexdigest(),
        }
    )


def stream(request):
    count = int(request.GET.get('count', 10))
    return StreamingHttpResponse((f'line {i}\n'.encode() for i in range(count)), content_type='text/plain')


def download(request):
    # FileResponse hands the open file to wsgi.file_wrapper.
    return FileResponse(open(os.environ['WSGI_TEST_DOWNLOAD'], 'rb'), as_attachment=True, filename='data.bin')


def error(request):
    raise RuntimeError('boom from django')
