"""Worker life cycle: N worker processes behind one socket, signals, reload, respawn, lifetime, memory, options.

Servers are real processes: the CLI, or the Python API through `tests.apps.workers_apps`
(for values the CLI bounds, such as lifetimes under a minute).
"""

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .rsgi_support import TIMEOUT, wait_for
from .server_support import PORT, ServerProcess, free_port, server_env

APPS = 'tests.apps.workers_apps'
APP = f'{APPS}:app'

pytestmark = pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='reads process details from /proc')


class Servers:
    """cli(*args) / api(**options) -> ServerProcess, without this process's GRANIAN_* settings.

    ready: PORT by default; None for a server expected to exit before serving."""

    def __init__(self, pool):
        self.pool = pool

    def cli(self, *args, target=APP, env=None, ready=PORT):
        return self.pool.start(target, '--loop', 'asyncio', *args, env=env, clean_env=True, ready=ready)

    def api(self, env=None, ready=PORT, **options):
        port = free_port()
        cmd = [sys.executable, '-m', APPS, json.dumps({'port': port, **options})]
        return self.pool.launch(cmd, port=port, env=server_env(env, clean=True), ready=ready, name='api')


@pytest.fixture
def servers(server_pool):
    """`Servers` on the test's pool; at teardown each server is stopped, then any worker it left behind."""
    yield Servers(server_pool)
    for server in server_pool.started:
        pids = spawned_pids(server)
        server.stop()
        for pid in pids:  # a worker left behind by a failed test: only ours, by PID
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- helpers ---------------------------------------------------------------------------------------------------------


def spawned_pids(server: ServerProcess) -> list:
    return [int(pid) for pid in re.findall(r'Spawned worker-\d+ \(PID (\d+)\)', server.log)]


def serving_count(server: ServerProcess) -> int:
    return len(re.findall(r'worker-\d+ \(PID \d+\) is serving', server.log))


def wait_serving(server: ServerProcess, count: int, timeout: float = 20) -> None:
    wait_for(lambda: serving_count(server) >= count, timeout=timeout, what=f'{count} workers serving:\n{server.log}')


def process_alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('State:'):
                    return 'Z' not in line.split()[1]
    except OSError:
        return False
    return True


def proc_status(pid: int, key: str) -> str:
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith(f'{key}:'):
                return line.split(':', 1)[1].strip()
    raise AssertionError(f'no {key} for {pid}')


def parent_of(pid: int) -> int:
    return int(proc_status(pid, 'PPid'))


def rss_mib(pid: int) -> float:
    return int(proc_status(pid, 'VmRSS').split()[0]) / 1024


def get(url: str) -> httpx.Response:
    """One request on a connection of its own."""
    return httpx.get(url, timeout=TIMEOUT, headers={'connection': 'close'})


def get_pid(server: ServerProcess) -> int:
    return int(get(server.url + '/pid').text)


class Hammer:
    """Threads sending requests back to back, each on a new connection, until stopped; records every outcome.

    A failure is `(kind, detail)`: `unanswered` when the connection ended before a single byte
    of response came back, `broken` for anything else (a refused connection, a partial or
    wrong response, a timeout).
    """

    def __init__(self, url: str, threads: int = 2, pause: float = 0.005):
        self.port = int(url.rsplit(':', 1)[1])
        self.pause = pause
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.pids = []
        self.failures = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _one(self):
        received = b''
        try:
            # The request goes out as soon as the connection is up, as most clients send it.
            with socket.create_connection(('127.0.0.1', self.port), timeout=TIMEOUT) as sock:
                sock.sendall(b'GET /pid HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n')
                while chunk := sock.recv(4096):
                    received += chunk
        except ConnectionRefusedError as exc:
            return ('broken', repr(exc))
        except OSError as exc:
            return ('broken' if received else 'unanswered', repr(exc))
        if not received:
            return ('unanswered', 'closed without a response')
        head, _, body = received.partition(b'\r\n\r\n')
        if not head.startswith(b'HTTP/1.1 200 ') or not body.isdigit():
            return ('broken', f'response {received[:80]!r}')
        return int(body)

    def _run(self):
        while not self.stop_event.is_set():
            outcome = self._one()
            with self.lock:
                (self.pids if isinstance(outcome, int) else self.failures).append(outcome)
            time.sleep(self.pause)

    def assert_nothing_lost(self, swaps: int) -> None:
        """Every request answered in full, across every worker swap."""
        assert self.pids, 'no request was answered'
        assert self.failures == [], self.failures

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(TIMEOUT + 5)

    def sent(self) -> int:
        with self.lock:
            return len(self.pids) + len(self.failures)

    def seen(self) -> set:
        with self.lock:
            return set(self.pids)


def in_parallel(url: str, count: int) -> list:
    """`count` requests at once, each on its own connection; returns the responses (or errors)."""
    results = [None] * count

    def one(i):
        try:
            results[i] = get(url)
        except httpx.HTTPError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT + 5)
    return results


# -- several workers, one socket ---------------------------------------------------------------------------------------


def test_load_spreads_over_workers(servers):
    srv = servers.cli('--workers', '2')
    wait_serving(srv, 2)
    workers = set(spawned_pids(srv))
    assert len(workers) == 2
    assert all(parent_of(pid) == srv.proc.pid for pid in workers)
    seen = set()
    for _ in range(5):
        responses = in_parallel(srv.url + '/sleep?s=0.3', 8)
        assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in responses), responses
        seen |= {int(r.text.split()[1]) for r in responses}
        if seen == workers:
            break
    assert seen == workers


def test_backpressure_is_per_worker(servers):
    # One request at a time per worker: two slow requests at once must be answered by both workers.
    srv = servers.cli('--workers', '2', '--backpressure', '1')
    wait_serving(srv, 2)
    responses = in_parallel(srv.url + '/sleep?s=1', 2)
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in responses), responses
    assert {int(r.text.split()[1]) for r in responses} == set(spawned_pids(srv))


def test_more_workers_than_cpus_warns(servers):
    count = (os.cpu_count() or 1) + 1
    srv = servers.cli('--workers', str(count))
    wait_serving(srv, count, timeout=30)
    assert get(srv.url + '/').text == 'ok'
    assert '[WARNING]' in srv.log and 'CPU cores' in srv.log


# -- signals ---------------------------------------------------------------------------------------------------------


def test_sigterm_completes_in_flight_requests_on_all_workers(servers):
    srv = servers.cli('--workers', '2', '--backpressure', '1')
    wait_serving(srv, 2)
    results = []
    thread = threading.Thread(target=lambda: results.extend(in_parallel(srv.url + '/slow?s=1.5', 2)))
    thread.start()
    wait_for(lambda: srv.log.count('slow request started') == 2, what='both requests to reach the app')
    srv.signal(signal.SIGTERM)
    thread.join(TIMEOUT + 5)
    assert [r.status_code for r in results] == [200, 200], results
    assert {int(r.text.split()[1]) for r in results} == set(spawned_pids(srv))
    assert srv.wait() == 0
    assert srv.log.count('stopped (exit code 0)') == 2
    assert 'Shutdown complete' in srv.log
    assert not any(process_alive(pid) for pid in spawned_pids(srv))


def test_sigint_stops_workers_once(servers):
    srv = servers.cli('--workers', '2')
    wait_serving(srv, 2)
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0
    assert 'Shutting down (SIGINT)' in srv.log
    assert srv.log.count('stopped (exit code 0)') == 2


def test_second_stop_signal_kills_workers(servers):
    srv = servers.cli(target=f'{APPS}:stubborn_app')
    wait_serving(srv, 1)
    srv.signal(signal.SIGINT)
    wait_for(lambda: 'Shutting down (SIGINT)' in srv.log, what='the shutdown to start')
    srv.signal(signal.SIGINT)
    assert srv.wait() == 0
    assert 'SIGINT received while stopping: killing the workers' in srv.log
    assert 'stopped (killed by SIGKILL)' in srv.log


def test_sighup_reload_under_load_loses_nothing(servers):
    srv = servers.cli('--workers', '2')
    wait_serving(srv, 2)
    old = set(spawned_pids(srv))
    slow = []
    in_flight = threading.Thread(target=lambda: slow.extend(in_parallel(srv.url + '/slow?s=2', 4)))
    with Hammer(srv.url) as hammer:
        wait_for(lambda: hammer.sent() >= 20, what='requests before the reload')
        in_flight.start()
        wait_for(lambda: srv.log.count('slow request started') == 4, what='the slow requests to reach the app')
        srv.signal(signal.SIGHUP)
        wait_for(lambda: serving_count(srv) >= 4, timeout=30, what=f'the new workers:\n{srv.log}')
        wait_for(lambda: srv.log.count('stopped (exit code 0)') >= 2, timeout=30, what='the old workers to stop')
        new = set(spawned_pids(srv)) - old
        wait_for(lambda: new <= hammer.seen(), what='the new workers to answer')
        count = hammer.sent()
        wait_for(lambda: hammer.sent() >= count + 20, what='requests after the reload')
    in_flight.join(TIMEOUT + 5)
    # Requests in flight on the old workers when they were asked to stop complete there.
    assert [r.status_code for r in slow] == [200] * 4, slow
    assert {int(r.text.split()[1]) for r in slow} <= old
    assert len(new) == 2
    assert not any(process_alive(pid) for pid in old)
    # New workers first: each old worker is asked to stop only once its replacement serves.
    log = srv.log
    for slot in (1, 2):
        replacing = log.index(f'Replacing worker-{slot}')
        new_pid = re.findall(rf'Spawned worker-{slot} \(PID (\d+)\)', log)[1]
        assert (
            replacing
            < log.index(f'worker-{slot} (PID {new_pid}) is serving')
            < log.index(f'Stopping the old worker-{slot}')
        )
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    hammer.assert_nothing_lost(swaps=2)


# -- failures and respawn ----------------------------------------------------------------------------------------------


def test_respawn_after_kill9(servers):
    srv = servers.cli('--workers', '2', '--respawn-failed-workers', '--respawn-interval', '0.2')
    wait_serving(srv, 2)
    victim, survivor = spawned_pids(srv)
    os.kill(victim, signal.SIGKILL)
    wait_serving(srv, 3)
    assert re.search(rf'worker-1 \(PID {victim}\) died unexpectedly \(killed by SIGKILL\)', srv.log)
    assert 'Respawning worker-1' in srv.log
    replacement = spawned_pids(srv)[2]
    assert parent_of(replacement) == srv.proc.pid
    assert process_alive(survivor)
    in_parallel(srv.url + '/', 4)
    assert srv.proc.poll() is None
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0


def test_worker_death_without_respawn_stops_the_server(servers):
    srv = servers.cli('--workers', '2')
    wait_serving(srv, 2)
    victim, other = spawned_pids(srv)
    os.kill(victim, signal.SIGKILL)
    assert srv.wait() == 1
    assert 'died unexpectedly (killed by SIGKILL)' in srv.log
    errors = [line for line in srv.log.splitlines() if line.startswith('[ERROR]') and 'respawn' in line.lower()]
    assert len(errors) == 1, srv.log
    assert '--respawn-failed-workers' in errors[0]
    assert not process_alive(other)


def test_failing_start_stops_instead_of_respawning(servers):
    srv = servers.cli('--respawn-failed-workers', '--respawn-interval', '0', target=f'{APPS}:failing_init_app')
    assert srv.wait(timeout=30) == 1
    assert 'init failed on purpose' in srv.log
    assert len(spawned_pids(srv)) == 1, srv.log
    assert 'exited before serving' in srv.log


def test_workers_exit_when_the_main_process_dies(servers):
    srv = servers.cli('--workers', '2')
    wait_serving(srv, 2)
    workers = spawned_pids(srv)
    srv.proc.kill()
    srv.proc.wait()
    wait_for(lambda: not any(process_alive(pid) for pid in workers), what='the orphaned workers to exit')


# -- kill timeout --------------------------------------------------------------------------------------------------


def test_kill_timeout_kills_a_worker_ignoring_sigterm(servers):
    srv = servers.cli('--workers-kill-timeout', '1', target=f'{APPS}:stubborn_app')
    wait_serving(srv, 1)
    assert get(srv.url + '/').text == 'ok'
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert re.search(r'worker-1 \(PID \d+\) did not stop within 1s: killed', srv.log)
    assert 'stopped (killed by SIGKILL)' in srv.log


def test_without_kill_timeout_the_server_waits(servers):
    srv = servers.cli(target=f'{APPS}:stubborn_app')
    # The same app under a 1 s kill timeout, asked to stop just after `srv`: once it reports its kill,
    # `srv` has been stopping for longer than that, and must still be waiting for its worker.
    control = servers.cli('--workers-kill-timeout', '1', target=f'{APPS}:stubborn_app')
    wait_serving(srv, 1)
    wait_serving(control, 1)
    (worker,) = spawned_pids(srv)
    srv.signal(signal.SIGTERM)
    srv.wait_log('Shutting down (SIGTERM)')
    control.signal(signal.SIGTERM)
    control.wait_log('did not stop within 1s: killed')
    assert control.wait() == 0
    assert srv.alive(), srv.log
    assert process_alive(worker)
    assert 'did not stop within' not in srv.log
    os.kill(worker, signal.SIGKILL)
    assert srv.wait() == 0


# -- lifetime and memory (Python API: the CLI bounds these) -----------------------------------------------------------


def test_lifetime_replaces_workers_one_at_a_time(servers):
    srv = servers.api(workers=2, workers_lifetime=2)
    wait_serving(srv, 2)
    first = set(spawned_pids(srv))
    with Hammer(srv.url) as hammer:
        # Two rounds of replacements for two workers: six workers served in all.
        wait_for(lambda: serving_count(srv) >= 6, timeout=40, what=f'lifetime replacements:\n{srv.log}')
        wait_for(lambda: srv.log.count('stopped (exit code 0)') >= 4, what='the replaced workers to stop')
    assert 'reached its lifetime (2s)' in srv.log
    assert not any(process_alive(pid) for pid in first)
    # Never all at once: between two replacements, the previous one completed.
    events = re.findall(r'(Replacing|Stopping the old) (worker-\d)', srv.log)
    assert len(events) >= 8, events  # four replacements (six workers served), each begun and completed
    assert [kind for kind, _ in events[:8]] == ['Replacing', 'Stopping the old'] * 4, events
    assert all(events[i][1] == events[i + 1][1] for i in range(0, len(events) - 1, 2)), events
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    hammer.assert_nothing_lost(swaps=4)


def test_max_rss_replaces_a_worker_gracefully(servers):
    limit = 120
    srv = servers.api(workers=2, workers_max_rss=limit, rss_sample_interval=0.2, rss_samples=2)
    wait_serving(srv, 2)
    workers = spawned_pids(srv)
    assert all(rss_mib(pid) < limit - 40 for pid in workers), 'idle workers should be well under the limit'
    heavy = int(get(srv.url + '/alloc?mb=100').text)
    (idle,) = set(workers) - {heavy}
    wait_serving(srv, 3)
    log = srv.log
    assert re.search(rf'worker-\d \(PID {heavy}\) uses \d+ MiB, over the {limit} MiB limit \(2/2 samples\)', log)
    assert re.search(rf'worker-\d \(PID {heavy}\) stayed over the memory limit: replacing it', log)
    # Each round samples both workers: the rounds that found the heavy one over the limit twice
    # looked at the idle one too, and left it alone (under the limit).
    over = re.findall(r'\(PID (\d+)\) uses (\d+) MiB, over the', log)
    assert {int(pid) for pid, _ in over} == {heavy}, log
    assert all(int(mib) > limit for _, mib in over), log
    wait_for(lambda: f'(PID {heavy}) stopped (exit code 0)' in srv.log, what='the old worker to stop')
    replacement = spawned_pids(srv)[2]
    assert parent_of(replacement) == srv.proc.pid
    assert process_alive(idle)
    assert {get_pid(srv) for _ in range(6)} <= {idle, replacement}
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0


# -- pid file, env files, process name, working dir ---------------------------------------------------------------------


def test_pid_file_with_workers(servers, tmp_path):
    pid_file = tmp_path / 'granian.pid'
    srv = servers.cli('--workers', '2', '--pid-file', str(pid_file))
    wait_serving(srv, 2)
    assert pid_file.read_text().strip() == str(srv.proc.pid)
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert not pid_file.exists()


def test_pid_file_naming_a_live_process_refuses_to_start(servers, tmp_path):
    pid_file = tmp_path / 'granian.pid'
    pid_file.write_text(f'{os.getpid()}\n')
    srv = servers.cli('--pid-file', str(pid_file), ready=None)
    assert srv.wait() == 1
    assert f'names a running process ({os.getpid()})' in srv.log
    assert 'Spawned' not in srv.log
    assert pid_file.read_text().strip() == str(os.getpid())


def test_env_files(servers, tmp_path):
    first = tmp_path / 'first.env'
    second = tmp_path / 'second.env'
    first.write_text('WK_FROM_FILE=first\nWK_OVERRIDDEN=first\nWK_REAL=file\n')
    second.write_text('WK_OVERRIDDEN=second\n')
    srv = servers.cli('--env-files', str(first), '--env-files', str(second), env={'WK_REAL': 'real'})
    url = srv.url + '/env?keys=WK_FROM_FILE,WK_OVERRIDDEN,WK_REAL'
    # Later files win over earlier ones; the real environment wins over files.
    assert get(url).json() == {'WK_FROM_FILE': 'first', 'WK_OVERRIDDEN': 'second', 'WK_REAL': 'real'}
    # A reload reads the files again.
    first.write_text('WK_FROM_FILE=changed\nWK_REAL=file\n')
    srv.signal(signal.SIGHUP)
    wait_for(lambda: 'stopped (exit code 0)' in srv.log, what='the old worker to stop')
    assert get(url).json() == {'WK_FROM_FILE': 'changed', 'WK_OVERRIDDEN': 'second', 'WK_REAL': 'real'}


def test_process_name(servers):
    srv = servers.cli('--workers', '2', '--process-name', 'wk-test-server')
    wait_serving(srv, 2)

    def cmdline(pid):
        return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode().strip()

    assert cmdline(srv.proc.pid) == 'wk-test-server'
    assert sorted(cmdline(pid) for pid in spawned_pids(srv)) == [
        'wk-test-server [worker-1]',
        'wk-test-server [worker-2]',
    ]


@pytest.mark.parametrize(
    ('module', 'option', 'value', 'extra'),
    [('setproctitle', 'process_name', 'web', 'granian[pname]'), ('dotenv', 'env_files', ['.env'], 'granian[dotenv]')],
)
def test_missing_extra_is_a_clear_configuration_error(monkeypatch, module, option, value, extra):
    from granian import Granian
    from granian.errors import ConfigurationError

    monkeypatch.setitem(sys.modules, module, None)  # what find_spec reports for a missing package
    with pytest.raises(ConfigurationError, match=re.escape(f'pip install {extra}')):
        Granian(APP, **{option: value})


def test_working_dir_with_workers(servers, tmp_path):
    (tmp_path / 'wd_workers_app.py').write_text(
        'import os\n\nasync def app(scope, proto):\n    proto.response_str(200, [], os.getcwd())\n'
    )
    srv = servers.cli('--workers', '2', '--working-dir', str(tmp_path), target='wd_workers_app:app')
    wait_serving(srv, 2)
    assert {os.path.realpath(r.text) for r in in_parallel(srv.url + '/', 4)} == {os.path.realpath(tmp_path)}


# -- hooks and control from Python -------------------------------------------------------------------------------------


def test_hooks_in_order_on_signals(servers, tmp_path):
    hooks = tmp_path / 'hooks.txt'
    srv = servers.api(workers=2, hooks_file=str(hooks))
    wait_serving(srv, 2)
    assert hooks.read_text().splitlines() == ['startup']
    srv.signal(signal.SIGHUP)
    wait_serving(srv, 4)
    assert hooks.read_text().splitlines() == ['startup', 'reload']
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert hooks.read_text().splitlines() == ['startup', 'reload', 'shutdown']


def test_reload_and_stop_from_python(servers, tmp_path):
    hooks = tmp_path / 'hooks.txt'
    srv = servers.api(workers=1, hooks_file=str(hooks), drive='reload-then-stop')
    assert srv.wait(timeout=30) == 0, srv.log
    assert hooks.read_text().splitlines() == ['startup', 'reload', 'shutdown']
    assert 'Reloading (reload() called)' in srv.log
    assert 'Shutting down (stop() called)' in srv.log
    assert len(spawned_pids(srv)) == 2


# -- workers as threads (what free-threaded builds run) -----------------------------------------------------------------


def test_thread_workers_serve_and_stop(servers):
    srv = servers.api(workers=2, server_class='mt')
    wait_for(lambda: srv.log.count('(thread) is serving') == 2, what=f'thread workers:\n{srv.log}')
    assert 'workers: 2 (threads)' in srv.log
    assert {int(r.text.split()[1]) for r in in_parallel(srv.url + '/sleep?s=0.2', 4)} == {srv.proc.pid}
    srv.signal(signal.SIGTERM)
    assert srv.wait() == 0
    assert srv.log.count('(thread) stopped (exit code 0)') == 2


def test_thread_workers_refuse_to_run_with_the_gil(servers):
    srv = servers.api(workers=2, server_class='mt', fake_gil='on', ready=None)
    assert srv.wait() == 1
    errors = [line for line in srv.log.splitlines() if line.startswith('[ERROR]')]
    assert len(errors) == 1 and 'the GIL is enabled' in errors[0], srv.log
    assert 'Spawned' not in srv.log


def test_thread_workers_stop_when_the_app_enables_the_gil(servers):
    srv = servers.api(server_class='mt', target=f'{APPS}:gil_on_import_app', factory=True, ready=None)
    assert srv.wait(timeout=30) == 1
    assert 'turned on while the application was imported' in srv.log
