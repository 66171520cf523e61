"""The Autobahn websocket cases (framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
close handling, big messages), driven by kosoku against each interface's echo endpoint, with
the server's compression on (its default).

The permessage-deflate cases (12.x: 18 message sizes and fragmentations, 1,000 messages each, for
5 kinds of data; 13.x: every offer and answer of window size and context takeover) take minutes
on a dev build: they run in full once (RSGI); the compression layer sits below the interface, so
ASGI runs a sample of each.
"""

import json
import shutil
import subprocess

import pytest

# Invalid UTF-8 split across the chunks of one frame: tungstenite validates text per complete
# frame, so the close (1007, as required) comes when the frame ends rather than at the bad byte.
KNOWN_NON_STRICT = {'6.4.3', '6.4.4'}
ACCEPTED = {'OK', 'NON-STRICT', 'INFORMATIONAL'}


def case_key(case_id: str) -> list:
    return [int(part) for part in case_id.split('.')]


# The cases each run selects (kosoku's -i/-x globs), and how many cases that is at least.
SELECTIONS = {
    'core': (['-x', '12.*', '-x', '13.*'], 300),
    'compression': (['-i', '12.*', '-i', '13.*', '-p', '4'], 216),
    'compression-sample': (['-i', '12.1.*', '-i', '13.*.4', '-p', '4'], 25),
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    'interface, selection',
    [('rsgi', 'core'), ('asgi', 'core'), ('rsgi', 'compression'), ('asgi', 'compression-sample')],
)
def test_autobahn_cases(start_server, interface, selection, tmp_path):
    kosoku = shutil.which('kosoku')
    assert kosoku, 'kosoku is in the dev dependencies: uv sync'
    server = start_server(f'tests.apps.ws_apps:{interface}_app', interface=interface)
    arguments, at_least = SELECTIONS[selection]
    run = subprocess.run(
        [kosoku, f'ws://127.0.0.1:{server.port}/echo', *arguments, '-o', str(tmp_path / 'report')],
        check=False,
        capture_output=True,
        text=True,
        timeout=840,
    )
    server.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    (cases,) = json.loads((tmp_path / 'report' / 'index.json').read_text()).values()
    assert len(cases) >= at_least
    failed = {
        case: (result['behavior'], result['behaviorClose'])
        for case, result in cases.items()
        if result['behavior'] not in ACCEPTED or result['behaviorClose'] not in ACCEPTED
    }
    assert not failed, failed
    non_strict = {
        case for case, result in cases.items() if 'NON-STRICT' in (result['behavior'], result['behaviorClose'])
    }
    assert non_strict <= KNOWN_NON_STRICT, sorted(non_strict - KNOWN_NON_STRICT, key=case_key)
