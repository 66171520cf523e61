"""The load generators: wrk (HTTP/1.1, HTTPS), h2load (HTTP/2), granian-bench-h3load (HTTP/3, benchmarks/h3load)
and ws_load.py (websockets), each pinned with taskset, and the parsing of what they print into one dict per run:
rps, requests, p50_ms, p99_ms, errors, ..., and the load generator's own CPU (`load_cpu`)."""

import json
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from .config import BENCH, CA_CERT, ENVS, H3LOAD_BIN
from .scenarios import Scenario


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r'([\d.]+)(us|ms|s|m|h)', value).groups()
    return float(number) * {'us': 0.001, 'ms': 1.0, 's': 1000.0, 'm': 60000.0, 'h': 3600000.0}[unit]


def percentile(values: list, fraction: float) -> float:
    if not values:
        return float('nan')
    return values[min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))]


def parse_wrk(out: str) -> dict:
    """What `wrk --latency` printed."""
    non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    socket_errors = {}
    if match := re.search(r'Socket errors: (.*)', out):
        socket_errors = {k: int(v) for k, v in re.findall(r'(\w+) (\d+)', match.group(1))}
    requests = re.search(r'(\d+) requests in', out)
    result = {
        'rps': float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1)),
        'requests': int(requests.group(1)) if requests else 0,
        'p50_ms': to_ms(re.search(r'^\s+50%\s+(\S+)', out, re.MULTILINE).group(1)),
        'p99_ms': to_ms(re.search(r'^\s+99%\s+(\S+)', out, re.MULTILINE).group(1)),
        'non2xx': int(non2xx.group(1)) if non2xx else 0,
        'socket_errors': socket_errors,
    }
    result['errors'] = result['non2xx'] + sum(socket_errors.values())
    return result


def load_wrk(scenario: Scenario, port: int, duration: int, cpus: str) -> dict:
    scheme = 'https' if scenario.tls else 'http'
    cmd = ['taskset', '-c', cpus, 'wrk', '-t1', f'-c{scenario.connections}', f'-d{duration}s', '--latency']
    cmd += ['--timeout', '5s']
    if scenario.script:
        cmd += ['-s', str(BENCH / scenario.script)]
    for header in scenario.headers:
        cmd += ['-H', header]
    cmd.append(f'{scheme}://127.0.0.1:{port}{scenario.path}')
    return parse_wrk(subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 60).stdout)


def h2load_latencies(log: Path) -> List[float]:
    """The latencies (ms, sorted) of h2load's per-request log (`--log-file`: start, status, duration in µs)."""
    latencies = []
    with log.open() as rows:
        for row in rows:
            parts = row.split('\t')
            if len(parts) >= 3:
                latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    return latencies


def parse_h2load(out: str, latencies: List[float]) -> dict:
    """What h2load printed, with the sorted latencies of its log."""
    counts = re.search(r'requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed', out)
    if not counts:
        raise RuntimeError(f'h2load: no result in {out[-300:]!r}')
    codes = re.search(r'status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx', out)
    return {
        'rps': float(re.search(r'finished in [\d.]+\w+, ([\d.]+) req/s', out).group(1)),
        'requests': int(counts.group(3)),
        'p50_ms': percentile(latencies, 0.50),
        'p99_ms': percentile(latencies, 0.99),
        'non2xx': int(codes.group(3)) + int(codes.group(4)) if codes else 0,
        'errors': int(counts.group(5)),
    }


def load_h2load(scenario: Scenario, port: int, duration: int, cpus: str) -> dict:
    scheme = 'https' if scenario.tls else 'http'  # https: TLS with ALPN h2 (h2load does not check the certificate)
    with tempfile.TemporaryDirectory(prefix='bench-h2load-') as tmp:
        log = Path(tmp) / 'requests.tsv'
        cmd = [
            'taskset', '-c', cpus, 'h2load', '-t1', f'-c{scenario.connections}', f'-m{scenario.streams}',
            f'-D{max(1, duration)}', f'--log-file={log}', f'{scheme}://127.0.0.1:{port}{scenario.path}',
        ]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 60).stdout
        latencies = h2load_latencies(log)
    return parse_h2load(out, latencies)


def h3load_cmd(scenario: Scenario, port: int, duration: float, connections: int, streams: int) -> list:
    return [
        str(H3LOAD_BIN), '--connections', str(connections), '--streams', str(streams), '--duration', str(duration),
        '--threads', '1', '--ca', str(CA_CERT), f'https://127.0.0.1:{port}{scenario.path}',
    ]  # fmt: skip


def parse_h3load(out: str) -> dict:
    """What granian-bench-h3load printed (one JSON object). Its errors are the requests that failed in the window;
    here, as with wrk, non-2xx answers, connections not made and streams cut by their connection's end count too.
    A run in which no response ended fails: a server that stalls posts no number."""
    result = json.loads(out)
    if not result['requests']:
        raise RuntimeError(f'h3load: no response ended in {result["seconds"]} s ({result["errors"]} errors)')
    return {
        'rps': result['rps'],
        'requests': result['requests'],
        'p50_ms': result['p50_ms'],
        'p99_ms': result['p99_ms'],
        'non2xx': result['non2xx'],
        'errors': result['errors'] + result['non2xx'] + result['connect_errors'] + result['streams_lost'],
        'connect_errors': result['connect_errors'],
        'streams_lost': result['streams_lost'],
        'bytes': result['bytes'],
    }


def load_h3load(scenario: Scenario, port: int, duration: int, cpus: str) -> dict:
    cmd = ['taskset', '-c', cpus, *h3load_cmd(scenario, port, duration, scenario.connections, scenario.streams)]
    return parse_h3load(subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + 60).stdout)


def probe_h3load(scenario: Scenario, port: int, seconds: float = 0.5) -> Optional[str]:
    """The readiness probe of an HTTP/3 row (after the one over TCP): one connection, one stream, `seconds` of
    GETs; None when they were answered with 200 and bodies of the expected length, else what is wrong."""
    cmd = h3load_cmd(scenario, port, seconds, 1, 1)
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        return f'HTTP/3: {" ".join(run.stderr.split())[-300:]}'
    result = json.loads(run.stdout)
    expected_len = scenario.expect if isinstance(scenario.expect, int) else len(scenario.expect)
    if not result['requests']:
        return f'HTTP/3: no answer in {seconds} s'
    if result['errors'] or result['non2xx'] or result['bytes'] != result['requests'] * expected_len:
        counts = f'{result["errors"]} errors, {result["non2xx"]} non-2xx'
        return f'HTTP/3: {counts}, {result["bytes"]} body bytes in {result["requests"]} answers'
    return None


def parse_ws(out: str) -> dict:
    """What ws_load.py printed (one JSON object). A run that asked for compression and had a connection without it
    (not negotiated, or no echo compressed) fails: its rate would be that of uncompressed messages, or of the
    connections that did compress."""
    result = json.loads(out)
    if result.get('uncompressed'):
        raise RuntimeError(
            f'{result["compression"]} asked for, not negotiated or not used on {result["uncompressed"]} of '
            f'{result["clients"]} connections: {"; ".join(result["failures"][:1])}'
        )
    compressed = {'compressed_replies': result['compressed_replies']} if result['compression'] != 'none' else {}
    return {
        'rps': result['rate'],
        'requests': result['echoed'],
        'p50_ms': result['p50_ms'],
        'p99_ms': result['p99_ms'],
        'errors': result['errors'] + result['slow_closes'],
        'slow_closes': result['slow_closes'],
        'close_max_ms': result['close_max_ms'],
        'failures': result['failures'],
        'seconds': result['seconds'],
        **compressed,
    }


# The slowest websocket rate a run may take before it times out: the run is a count of messages, not a duration,
# and compressed 1 KiB echoes run at a few thousand messages/s (uvicorn, hypercorn: 5-7 k on this machine).
WS_FLOOR_RATE = 2000


def load_ws(scenario: Scenario, port: int, duration: int, cpus: str, messages: int) -> dict:
    timeout = max(30.0, duration * 10, scenario.connections * messages / WS_FLOOR_RATE)
    cmd = [
        'taskset', '-c', cpus, str(ENVS / 'tools' / 'bin' / 'python'), str(BENCH / 'ws_load.py'),
        '--url', f'ws://127.0.0.1:{port}{scenario.path}', '--clients', str(scenario.connections),
        '--messages', str(messages), '--timeout', str(timeout), '--size', str(scenario.ws_size),
        '--payload', scenario.ws_payload, '--compression', scenario.ws_compression,
    ]  # fmt: skip
    return parse_ws(subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout + 30).stdout)


def drive(scenario: Scenario, port: int, duration: int, cpus: str, ws_messages: int) -> dict:
    """The scenario's load for `duration` s (websockets: `ws_messages` per client), with the load generator's CPU
    time (user + system, from the rusage of the children this process waited for) over its wall time: `load_cpu`,
    1.0 being its core busy all along (then the run measured the load generator), and per request."""
    before, began = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    if scenario.load == 'wrk':
        run = load_wrk(scenario, port, duration, cpus)
    elif scenario.load == 'h2load':
        run = load_h2load(scenario, port, duration, cpus)
    elif scenario.load == 'h3load':
        run = load_h3load(scenario, port, duration, cpus)
    else:
        run = load_ws(scenario, port, duration, cpus, ws_messages)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - began
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    run['load_cpu'] = round(cpu / wall, 3)
    if run.get('requests'):
        run['load_cpu_us_per_req'] = round(cpu * 1e6 / run['requests'], 2)
    return run
