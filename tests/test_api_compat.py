"""Our public Python surface against granian 2.8.7's, fact by fact.

`tools/manifests/granian-2.8.7.json` is the reference's surface, dumped from the PyPI
package by `tools/api_manifest.py reference`. Ours is dumped the same way, in a fresh
interpreter, and every fact of the reference that ours lacks or states otherwise fails
here unless a line of `tests/api_compat_allowlist.txt` names it with its reason (each of
those is a deliberate difference, explained in docs/MIGRATION.md). Names only we have are
not differences (code written for the reference cannot use them), except a required
parameter added to a callable the reference has, which breaks its callers.
"""

import fnmatch
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_VERSION = '2.8.7'
MANIFEST = ROOT / 'tools' / 'manifests' / f'granian-{REFERENCE_VERSION}.json'
ALLOWLIST = Path(__file__).with_name('api_compat_allowlist.txt')


def _load_tool():
    spec = importlib.util.spec_from_file_location('api_manifest', ROOT / 'tools' / 'api_manifest.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_manifest = _load_tool()


def _read_allowlist() -> list[tuple[str, str]]:
    entries = []
    for number, line in enumerate(ALLOWLIST.read_text().splitlines(), 1):
        if not line.strip() or line.startswith('#'):
            continue
        pattern, sep, reason = line.partition(' | ')
        assert sep and reason.strip(), f'{ALLOWLIST.name}:{number}: expected "PATTERN | reason", got {line!r}'
        entries.append((pattern.strip(), reason.strip()))
    return entries


@pytest.fixture(scope='module')
def reference() -> dict:
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope='module')
def ours() -> dict:
    # A fresh interpreter: nothing the test session imported or patched leaks into the dump.
    out = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'api_manifest.py'), 'dump'],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def _unexplained(diffs: dict, allowlist: list[tuple[str, str]]) -> dict:
    return {key: diff for key, diff in diffs.items() if not any(fnmatch.fnmatchcase(key, p) for p, _ in allowlist)}


def test_surface_matches_reference(reference, ours):
    diffs = api_manifest.compare(reference, ours)
    unexplained = _unexplained(diffs, _read_allowlist())
    report = '\n'.join(
        f'{key}\n    reference: {left}\n    ours:      {right}' for key, (left, right) in unexplained.items()
    )
    assert not unexplained, f'{len(unexplained)} differences from granian {REFERENCE_VERSION}:\n{report}'


def test_allowlist_has_no_stale_lines(reference, ours):
    """Every allowlist line still explains a difference: a mended one must leave the list."""
    diffs = api_manifest.compare(reference, ours)
    stale = [pattern for pattern, _ in _read_allowlist() if not any(fnmatch.fnmatchcase(k, pattern) for k in diffs)]
    assert not stale, f'allowlist lines that match no difference: {stale}'


def test_allowlist_lines_are_in_the_migration_guide():
    guide = (ROOT / 'docs' / 'MIGRATION.md').read_text()
    missing = [pattern for pattern, _ in _read_allowlist() if f'`{pattern}`' not in guide]
    assert not missing, f'allowlisted differences not explained in docs/MIGRATION.md: {missing}'


@pytest.mark.parametrize(
    'key',
    [
        'granian.rsgi.WebsocketProtocol',
        'granian.rsgi.HTTPProtocol.response_str(status)',
        'granian.errors.ConfigurationError.__mro__',
        'cli --workers.range',
    ],
)
def test_a_removed_or_changed_fact_fails(reference, ours, key):
    """The check is not vacuous: drop or alter one fact of ours and it is reported."""
    flat_ref = api_manifest.flatten(reference)
    assert key in flat_ref
    mutated = json.loads(json.dumps(ours))
    if key.startswith('cli '):
        option, _, field = key[4:].rpartition('.')
        mutated['cli']['params'][option][field] = {'min': 0, 'max': 0}
    else:
        module, name = 'granian.rsgi', None
        for module_name in sorted(mutated['modules'], key=len, reverse=True):
            if key.startswith(module_name + '.'):
                module, name = module_name, key[len(module_name) + 1 :].split('.')[0].split('(')[0]
                break
        if key.endswith('__mro__'):
            mutated['modules'][module]['names'][name]['bases'] = ['builtins.Exception']
        else:
            del mutated['modules'][module]['names'][name]
    assert key in api_manifest.compare(reference, mutated)


def test_manifest_regenerates_byte_for_byte(tmp_path):
    """The committed manifest is what the script writes for the PyPI release today."""
    if shutil.which('uv') is None:
        pytest.skip('uv is needed to build the reference venv')
    out = tmp_path / 'manifest.json'
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'tools' / 'api_manifest.py'),
            'reference',
            '--version',
            REFERENCE_VERSION,
            '--out',
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0 and 'could not install' in proc.stderr:
        pytest.skip(f'PyPI not reachable: {proc.stderr.strip()[-300:]}')
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == MANIFEST.read_bytes()
