"""One run: start a server pinned with taskset in a session of its own, probe it until it gives the expected
answer (an HTTP/3 row: over TCP, then over HTTP/3), warm it up, measure it (the load, its CPU time, its peak RSS),
stop it."""

import contextlib
import http.client
import os
import shlex
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Optional

from .config import BENCH, LOGS
from .loads import drive, probe_h3load
from .procs import LIVE, cpu_seconds, peak_rss, stop
from .scenarios import Scenario
from .servers import Ctx, Row


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def probe(scenario: Scenario, port: int, ca: Path) -> Optional[str]:
    """One request as the load will make it; None when the answer is right, else what is wrong."""
    if scenario.tls:
        context = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection('127.0.0.1', port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
    try:
        method = 'GET' if scenario.probe_body is None else 'POST'
        conn.request(method, scenario.path, body=scenario.probe_body)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    expected_len = scenario.expect if isinstance(scenario.expect, int) else len(scenario.expect)
    if response.status != 200:
        return f'status {response.status}'
    if len(body) != expected_len or (isinstance(scenario.expect, bytes) and body != scenario.expect):
        return f'unexpected body ({len(body)} bytes: {body[:40]!r})'
    return None


def start(row: Row, scenario: Scenario, ctx: Ctx, cpus: str, log: Path) -> subprocess.Popen:
    cmd = ['taskset', '-c', cpus, *row.server.command(row, scenario, ctx)]
    env = {**os.environ, 'PYTHONPATH': str(BENCH), 'PYTHONDONTWRITEBYTECODE': '1'}
    env.pop('VIRTUAL_ENV', None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open('w') as out:
        out.write(f'$ {shlex.join(cmd)}\n')
        out.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=BENCH,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    LIVE[proc.pid] = proc
    deadline = time.monotonic() + 30
    problem = 'no answer'
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f'exited with {proc.returncode} at start: {tail(log)}')
        try:
            problem = probe(scenario, ctx.port, ctx.cert.parent / 'ca.pem')
        except (OSError, http.client.HTTPException) as exc:
            problem = f'{type(exc).__name__}: {exc}'
            time.sleep(0.2)
            continue
        if problem is None and scenario.http3:
            # It answers over TCP; HTTP/3 must answer too (its UDP listener may come up a moment later): a server
            # that serves no HTTP/3 fails the run here.
            problem = probe_h3load(scenario, ctx.port)
            if problem is not None:
                time.sleep(0.2)
                continue
        if problem is None:
            return proc
        break
    stop(proc)
    raise RuntimeError(f'not ready in 30 s or wrong answer ({problem}): {tail(log)}')


def tail(log: Path, lines: int = 6) -> str:
    with contextlib.suppress(OSError):
        return ' | '.join(log.read_text(errors='replace').strip().splitlines()[-lines:])
    return ''


def measure(row: Row, scenario: Scenario, ctx: Ctx, args, round_no: int) -> dict:
    ctx.port = free_port()
    log = LOGS / f'{scenario.name}--{row.key}--r{round_no}.log'
    proc = start(row, scenario, ctx, args.server_cpus, log)
    try:
        if args.warmup > 0:
            drive(scenario, ctx.port, args.warmup, args.load_cpus, max(20, args.ws_messages // 10))
        # CPU time per request: what a request costs the server, whatever the load generator did.
        cpu_before = cpu_seconds(proc.pid)
        run = drive(scenario, ctx.port, args.duration, args.load_cpus, args.ws_messages)
        cpu_used = cpu_seconds(proc.pid) - cpu_before
        served = run.get('requests') or run['rps'] * args.duration
        if served:
            run['cpu_us_per_req'] = round(cpu_used * 1e6 / served, 2)
        if scenario.http3 and (problem := probe_h3load(scenario, ctx.port)):
            # A server that stalled during the run (answers stop, errors stay 0) posts a number that is no
            # measurement: it must still answer at the end.
            raise RuntimeError(f'no longer answering after the run: {problem}')
        peaks = peak_rss(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f'server exited with {proc.returncode} during the run: {tail(log)}')
    finally:
        stop(proc)
    run['rss_kib'] = sum(peaks.values())
    run['rss_processes_kib'] = sorted(peaks.values(), reverse=True)
    return run
