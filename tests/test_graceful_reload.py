"""Replacing workers loses no request: SIGHUP reloads and workers reaching their lifetime,
under steady keep-alive load from several clients. Old workers answer what they read, tell
HTTP/1.1 clients `Connection: close` on it, and close connections at rest only after a grace.
"""

import signal
import subprocess
import sys
import threading
import time

import trustme

from tests.rsgi_support import RawHTTP1
from tests.server_support import HOST, free_port, server_env, wait_for

APP = 'tests.apps.workers_apps:app'
CLIENTS = 32


class KeepAliveClient(threading.Thread):
    """Sends `GET /pid` over one keep-alive connection after another, as fast as answers
    come; a new connection only when the server said `Connection: close`. Anything else
    that ends a connection under a request (EOF, reset) is a lost request."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.answered = 0
        self.closes = 0
        self.lost: list = []
        self.pids: set = set()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = RawHTTP1(self.port, timeout=10)
                conn.send(b'GET /pid HTTP/1.1\r\nHost: test\r\n\r\n')
                response = conn.read_response()  # EOFError: closed under a request
                if response.status != 200:
                    raise ConnectionError(f'bad answer {response.status} {response.body!r}')
                self.answered += 1
                self.pids.add(response.body.decode())
                if response.header('connection', '').lower() == 'close':
                    self.closes += 1
                    conn.close()
                    conn = None
            except (OSError, EOFError) as exc:
                self.lost.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _serving_count(server) -> int:
    return server.log.count('is serving')


def test_reloads_and_lifetimes_lose_no_request(server_pool):
    port = free_port()
    # workers_lifetime below the command line's minimum (60 s): through the Python API.
    script = (
        'from granian import Granian; '
        f"Granian({APP!r}, interface='rsgi', port={port}, workers=2, workers_lifetime=4).serve()"
    )
    server = server_pool.launch([sys.executable, '-c', script], port=port, env=server_env(clean=True), ready=None)
    wait_for(lambda: _serving_count(server) >= 2, timeout=20, what='two workers serving')
    stop = threading.Event()
    clients = [KeepAliveClient(port, stop) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: all(c.answered > 20 for c in clients), what='every client answered')
        for _ in range(2):
            before = _serving_count(server)
            server.signal(signal.SIGHUP)
            # Both replaced: two new workers serve.
            wait_for(lambda want=before + 2: _serving_count(server) >= want, timeout=30, what='the reload to finish')
        # Then the lifetime replaces the workers once more (4 s after each started).
        before = _serving_count(server)
        wait_for(lambda: _serving_count(server) >= before + 2, timeout=30, what='lifetime replacements')
        wait_for(lambda: 'reached its lifetime' in server.log, what='the lifetime log line')
        time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=15)
    lost = [loss for c in clients for loss in c.lost]
    answered = sum(c.answered for c in clients)
    assert not lost, f'{len(lost)} requests lost of {answered}: {lost[:5]}'
    # The clients were moved to the new workers by `Connection: close`, not by errors.
    assert sum(c.closes for c in clients) >= CLIENTS
    assert len(set().union(*(c.pids for c in clients))) >= 6  # 2 workers x (start + 2 reloads + lifetime)


def test_http2_clients_get_a_goaway_and_lose_nothing_on_reload(server_pool, tmp_path):
    # curl (nghttp2) follows a graceful GOAWAY as RFC 9113 describes it (python's h2 takes the
    # PING after the first GOAWAY for an error). Over TLS: curl 7.88 does not reuse h2c
    # connections with prior knowledge.
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    cert_path, key_path, ca_path = tmp_path / 'cert.pem', tmp_path / 'key.pem', tmp_path / 'ca.pem'
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    port = free_port()
    script = (
        f"from granian import Granian; Granian({APP!r}, interface='rsgi', port={port}, workers=1, "
        f'ssl_cert={str(cert_path)!r}, ssl_key={str(key_path)!r}).serve()'
    )
    server = server_pool.launch([sys.executable, '-c', script], port=port, env=server_env(clean=True), ready=None)
    wait_for(lambda: _serving_count(server) >= 1, timeout=20, what='the worker serving')
    urls = [f'https://{HOST}:{port}/sleep?s=0.01&i={i}' for i in range(400)]
    curl = subprocess.Popen(
        ['curl', '--http2', '--cacert', str(ca_path), '-s', '-w', '\\n%{http_code} %{http_version}\\n', *urls],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)  # a share of the requests go to the first worker
    server.signal(signal.SIGHUP)
    out, err = curl.communicate(timeout=60)
    assert curl.returncode == 0, err.decode()
    lines = out.decode().split('\n')
    answers = [line for line in lines if line.startswith('slept ')]
    codes = [line for line in lines if line and not line.startswith('slept ')]
    assert len(codes) == len(urls)
    assert set(codes) == {'200 2'}
    pids = {answer.split()[1] for answer in answers}
    assert len(pids) == 2, 'the reload happened during the requests and moved the client to the new worker'
