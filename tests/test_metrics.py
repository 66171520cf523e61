"""`--metrics`: the Prometheus exporter of the main process, scraped and parsed like Prometheus does
(prometheus_client's text parser), against a real server with real clients."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest
import trustme
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.server_support import HOST, free_port, wait_for

# Every series granian 2.8.7 exports, with its type.
REFERENCE = {
    'granian_workers_spawns': 'counter',
    'granian_workers_respawns_for_err': 'counter',
    'granian_workers_respawns_for_lifetime': 'counter',
    'granian_workers_respawns_for_rss': 'counter',
    'granian_worker_lifetime': 'counter',
    'granian_connections_active': 'gauge',
    'granian_connections_handled': 'counter',
    'granian_connections_err': 'counter',
    'granian_requests_handled': 'counter',
    'granian_static_requests_handled': 'counter',
    'granian_static_requests_err': 'counter',
    'granian_blocking_threads': 'gauge',
    'granian_blocking_queue': 'gauge',
    'granian_blocking_idle_cumulative': 'counter',
    'granian_blocking_busy_cumulative': 'counter',
    'granian_py_wait_cumulative': 'counter',
}


def scrape(port: int, path: str = '/metrics') -> httpx.Response:
    return httpx.get(f'http://{HOST}:{port}{path}', timeout=5)


def families(port: int) -> dict:
    response = scrape(port)
    assert response.status_code == 200
    assert response.headers['content-type'].startswith('text/plain; version=0.0.4')
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def total(found: dict, name: str, sample: str = '') -> float:
    """The sum of a family's samples over its workers (`sample`: a suffix such as `_count`); the parser
    names counter samples with `_total`, as Prometheus does."""
    names = {name + sample, name + sample + '_total'}
    return sum(s.value for s in found[name].samples if s.name in names)


def raw_value(text: str, name: str) -> float:
    """A series' value summed over its labels, read from the text as exposed (no parser renaming)."""
    values = [float(line.rsplit(' ', 1)[1]) for line in text.splitlines() if line.split('{')[0].split(' ')[0] == name]
    assert values, f'{name} missing'
    return sum(values)


def start_metered(start_server, target: str, *args: str, **options):
    """A server with the exporter on a free port (`server.metrics_port`), rendering every second."""
    metrics_port = free_port()
    cli = ('--metrics', '--metrics-port', str(metrics_port), '--metrics-scrape-interval', '1')
    server = start_server(target, *cli, *args, ready='is serving', **options)
    server.metrics_port = metrics_port
    return server


def scraped_once(port: int, name: str, at_least: float, what: str) -> str:
    """The page, once `name` reached `at_least` (the page is rendered at most once per interval)."""
    return wait_for(lambda: (t := scrape(port).text) and raw_value(t, name) >= at_least and t, what=what)


@pytest.fixture
def metered(start_server, tmp_path):
    static_dir = tmp_path / 'static'
    static_dir.mkdir()
    (static_dir / 'file.txt').write_text('static content')
    server = start_metered(
        start_server,
        'tests.apps.metrics_app:app',
        '--static-path-mount',
        str(static_dir),
        '--respawn-failed-workers',
        '--respawn-interval',
        '0',
        workers=2,
    )
    wait_for(lambda: server.log.count('is serving') >= 2, what='both workers serving')
    return server


def test_reference_series_and_counts(metered):
    port = metered.metrics_port
    url = metered.url
    with httpx.Client(timeout=5) as h1:
        for _ in range(5):
            assert h1.get(f'{url}/').status_code == 200
        assert h1.post(f'{url}/', content=b'x' * 1000).status_code == 200
        assert h1.get(f'{url}/error').status_code == 500
        assert h1.get(f'{url}/static/file.txt').text == 'static content'
        assert h1.get(f'{url}/static/missing.txt').status_code == 404
    with httpx.Client(http1=False, http2=True, timeout=5) as h2:
        for _ in range(3):
            response = h2.get(f'{url}/')
            assert response.http_version == 'HTTP/2'
    # A malformed request: hyper answers 400 itself and the connection ends with an error.
    with socket.create_connection((HOST, metered.port)) as raw:
        raw.sendall(b'NOT HTTP AT ALL\r\n\r\n')
        assert raw.recv(100).startswith(b'HTTP/1.1 400')

    async def talk():
        async with websockets.connect(f'ws://{HOST}:{metered.port}/echo') as ws:
            for i in range(4):
                await ws.send(f'message {i}')
                assert await ws.recv() == f'message {i}'

    asyncio.run(talk())
    # 5 + 1 POST + 1 error + 2 static + 3 on HTTP/2, and the websocket handshake (answered 101).
    answered = 13
    found = wait_for(
        lambda: (f := families(port)) and total(f, 'granian_requests_handled') >= answered and f,
        timeout=10,
        what='the requests counted',
    )
    text = scrape(port).text
    for name, kind in REFERENCE.items():
        assert name in found, name
        assert found[name].type == kind, name
        assert f'# HELP {name} ' in text and f'# TYPE {name} {kind}' in text, name
    # Counters keep granian's names (no `_total` added), so existing dashboards keep working.
    assert raw_value(text, 'granian_workers_spawns') == 2
    assert raw_value(text, 'granian_requests_handled') == answered
    assert raw_value(text, 'granian_static_requests_handled') == 2
    assert raw_value(text, 'granian_static_requests_err') == 1
    assert raw_value(text, 'granian_static_bytes') == len('static content')
    assert raw_value(text, 'granian_connections_err') >= 1
    # One connection each: the HTTP/1.1 client (keep-alive), the HTTP/2 one, the raw socket, the websocket.
    assert raw_value(text, 'granian_connections_handled') == 4
    assert raw_value(text, 'granian_request_body_bytes') == 1000
    assert raw_value(text, 'granian_response_body_bytes') >= len('ok 0') * 8
    assert raw_value(text, 'granian_websocket_messages_received') == 4
    assert raw_value(text, 'granian_websocket_messages_sent') == 4
    assert {s.labels['worker'] for s in found['granian_requests_handled'].samples} == {'1', '2'}

    durations = found['granian_request_duration_seconds']
    assert durations.type == 'histogram'
    by_labels = {}
    for sample in durations.samples:
        key = (sample.labels['interface'], sample.labels['protocol'], sample.labels['status'])
        by_labels.setdefault(key, {})[sample.name, sample.labels.get('le')] = sample.value
    counts = {key: values[('granian_request_duration_seconds_count', None)] for key, values in by_labels.items()}
    # HTTP/1.1: 6 app answers and the static file (2xx), the app error (5xx), the missing file (4xx).
    assert counts[('rsgi', '1.1', '2xx')] == 7
    assert counts[('rsgi', '1.1', '5xx')] == 1
    assert counts[('rsgi', '1.1', '4xx')] == 1
    assert counts[('rsgi', '2', '2xx')] == 3
    assert counts[('rsgi', '1.1', '1xx')] == 1
    for key, values in by_labels.items():
        buckets = sorted((float(le), value) for (name, le), value in values.items() if name.endswith('_bucket'))
        cumulative = [value for _, value in buckets]
        assert cumulative == sorted(cumulative), key
        assert buckets[-1] == (float('inf'), counts[key]), key
        assert values[('granian_request_duration_seconds_sum', None)] > 0, key


def test_other_paths_are_404(metered):
    assert scrape(metered.metrics_port, '/').status_code == 404
    assert scrape(metered.metrics_port, '/metrics/x').status_code == 404


def test_counters_survive_a_worker_crash_and_a_reload(metered):
    port = metered.metrics_port
    url = metered.url
    with httpx.Client(timeout=5) as client:
        for _ in range(10):
            client.get(f'{url}/')
    before = scraped_once(port, 'granian_requests_handled', 10, 'the first requests counted')
    worker_pids = [int(pid) for pid in re.findall(r'Spawned worker-\d+ \(PID (\d+)\)', metered.log)]
    assert worker_pids, metered.log
    os.kill(worker_pids[0], signal.SIGKILL)
    wait_for(lambda: 'Respawning worker' in metered.log, what='the respawn')
    wait_for(lambda: metered.log.count('is serving') >= 3, what='the respawned worker serving')
    after_crash = scraped_once(port, 'granian_workers_respawns_for_err', 1, 'the respawn counted')
    assert raw_value(after_crash, 'granian_workers_respawns_for_err') == 1
    for name in ('granian_requests_handled', 'granian_connections_handled', 'granian_worker_lifetime'):
        assert raw_value(after_crash, name) >= raw_value(before, name), name
    assert raw_value(after_crash, 'granian_workers_spawns') == 3
    mark = metered.mark()
    metered.signal(signal.SIGHUP)
    wait_for(lambda: metered.log_since(mark).count('is serving') >= 2, timeout=20, what='the reload')
    after_reload = scraped_once(port, 'granian_workers_spawns', 5, 'the reload counted')
    assert raw_value(after_reload, 'granian_workers_spawns') == 5
    for name in ('granian_requests_handled', 'granian_connections_handled'):
        assert raw_value(after_reload, name) >= raw_value(after_crash, name), name


def test_a_busy_metrics_port_is_a_clear_startup_error():
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [
                sys.executable,
                '-m',
                'granian',
                '--interface',
                'rsgi',
                '--port',
                str(free_port()),
                '--metrics',
                '--metrics-port',
                str(port),
                'tests.apps.metrics_app:app',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert run.returncode != 0
    assert 'metrics_port' in run.stderr + run.stdout
    assert 'Traceback' not in run.stderr


def test_one_worker_wsgi(start_server):
    server = start_metered(start_server, 'tests.apps.wsgi_app:app', interface='wsgi')
    for _ in range(3):
        assert httpx.get(f'{server.url}/', timeout=5).status_code == 200
    text = scraped_once(server.metrics_port, 'granian_requests_handled', 3, 'the WSGI requests counted')
    assert raw_value(text, 'granian_blocking_threads') >= 1
    assert raw_value(text, 'granian_blocking_busy_cumulative') > 0


def test_tls_handshake_failures_are_counted(start_server, tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert(HOST, 'localhost')
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    server = start_metered(start_server, 'tests.apps.metrics_app:app', tls=(cert, key))
    # Plain HTTP to the TLS port: the handshake fails.
    with socket.create_connection((HOST, server.port)) as raw:
        raw.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        raw.recv(100)
    with httpx.Client(verify=False, timeout=5) as client:
        assert client.get(f'{server.url}/').status_code == 200
    text = scraped_once(server.metrics_port, 'granian_requests_handled', 1, 'the HTTPS request counted')
    assert raw_value(text, 'granian_tls_handshake_failures') == 1
    assert raw_value(text, 'granian_connections_err') == 1
