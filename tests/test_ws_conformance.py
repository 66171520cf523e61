"""The Autobahn websocket cases (framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
close handling, big messages), driven by kosoku against each interface's echo endpoint.

permessage-deflate (cases 12.x and 13.x) is not offered by the server, so those are left out.
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


@pytest.mark.timeout(600)
@pytest.mark.parametrize('interface', ['rsgi', 'asgi'])
def test_autobahn_cases(start_server, interface, tmp_path):
    kosoku = shutil.which('kosoku')
    assert kosoku, 'kosoku is in the dev dependencies: uv sync'
    server = start_server(f'tests.apps.ws_apps:{interface}_app', interface=interface)
    run = subprocess.run(
        [kosoku, f'ws://127.0.0.1:{server.port}/echo', '-x', '12.*', '-x', '13.*', '-o', str(tmp_path / 'report')],
        check=False,
        capture_output=True,
        text=True,
        timeout=540,
    )
    server.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    (cases,) = json.loads((tmp_path / 'report' / 'index.json').read_text()).values()
    assert len(cases) >= 300
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
