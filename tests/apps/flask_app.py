"""A Flask app served over WSGI: JSON, a form POST with a file, a streamed response, a file download."""

import hashlib
import os

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

app = Flask(__name__)


@app.get('/json')
def json_view():
    return jsonify(
        hello='flask',
        path=request.path,
        script_root=request.script_root,
        args=request.args.to_dict(),
        user_agent=request.headers.get('user-agent'),
        protocol=request.environ['SERVER_PROTOCOL'],
    )


@app.post('/json')
def json_echo():
    payload = request.get_json()
    return jsonify(received=payload, content_type=request.content_type), 201


@app.post('/form')
def form():
    upload = request.files['file']
    data = upload.read()
    return jsonify(
        name=request.form['name'],
        tags=request.form.getlist('tag'),
        filename=upload.filename,
        content_type=upload.content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


@app.get('/stream')
def stream():
    count = int(request.args.get('count', 10))

    def lines():
        for i in range(count):
            yield f'line {i} of {request.path}\n'

    return Response(stream_with_context(lines()), mimetype='text/plain')


@app.get('/download')
def download():
    # send_file hands the open file to wsgi.file_wrapper.
    return send_file(os.environ['WSGI_TEST_DOWNLOAD'], as_attachment=True, download_name='data.bin')


@app.get('/error')
def error():
    raise RuntimeError('boom from flask')
