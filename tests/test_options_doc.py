"""The option declaration (`granian._options`) against what is derived from it or must agree with it.

docs/OPTIONS.md is generated from it (`tools/gen_options_doc.py`) and must be current; the
`granian` command's click options are built from it; `Granian.__init__` keeps a literal
signature (IDEs and the API compatibility test read it), so its defaults, and those of
`HTTP1Settings`/`HTTP2Settings`, are checked against the declared ones here.
"""

import dataclasses
import difflib
import importlib.util
import inspect
import os
import re
from pathlib import Path

import click
import granian.cli as granian_cli
import pytest
from granian import Granian
from granian._options import KINDS, NO_DEFAULT, OPTIONS, PYTHON_ONLY, SETTINGS_GROUPS, TARGET_HELP

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'


def _load_generator():
    spec = importlib.util.spec_from_file_location('gen_options_doc', ROOT / 'tools' / 'gen_options_doc.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_options_doc = _load_generator()


def _same(left, right) -> bool:
    # `1 == True` and `30 == 30.0`: a default must also keep its type.
    return type(left) is type(right) and left == right


# docs/OPTIONS.md


def test_options_doc_is_up_to_date():
    expected = gen_options_doc.render()
    current = gen_options_doc.DOC.read_text(encoding='utf-8') if gen_options_doc.DOC.exists() else ''
    if current != expected:
        diff = ''.join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    'docs/OPTIONS.md (committed)',
                    'docs/OPTIONS.md (generated)',
                )
            )[:60]
        )
        pytest.fail(f'docs/OPTIONS.md is stale: run `.venv/bin/{gen_options_doc.REGENERATE}`\n{diff}')


def test_doc_lists_every_option_and_variable():
    text = gen_options_doc.render()
    for spec in OPTIONS:
        row = next(line for line in text.splitlines() if line.startswith(f'| `{spec.flags.split("/")[0]}`'))
        assert f'`{spec.envvar}`' in row
        assert spec.help.replace('|', '\\|') in row
        assert f'`{spec.kwarg}`' in row
    for param in PYTHON_ONLY:
        assert f'| `{param.kwarg}` |' in text


def test_check_mode(tmp_path, monkeypatch, capsys):
    doc = tmp_path / 'OPTIONS.md'
    monkeypatch.setattr(gen_options_doc, 'DOC', doc)
    monkeypatch.setattr(gen_options_doc, 'ROOT', tmp_path)
    assert gen_options_doc.main(['--check']) == 1  # missing
    doc.write_text(gen_options_doc.render() + 'A line added by hand.\n')
    assert gen_options_doc.main(['--check']) == 1  # edited by hand
    assert gen_options_doc.REGENERATE in capsys.readouterr().err
    assert gen_options_doc.main([]) == 0
    assert doc.read_text() == gen_options_doc.render()
    assert gen_options_doc.main(['--check']) == 0


def test_readme_points_to_the_options_doc():
    text = README.read_text(encoding='utf-8')
    section = text.split('\n## Options\n', 1)[1].split('\n## ', 1)[0]
    assert 'docs/OPTIONS.md' in section
    # Any option the README names is one the command has.
    known = {flag for spec in OPTIONS for flag in spec.flags.split('/')} | {'--help', '--version'}
    named = set(re.findall(r'(?<![\w-])--[a-z][a-z0-9-]*', text))
    assert named <= known, f'README names options the command does not have: {sorted(named - known)}'


# the declaration itself


def test_declaration_is_consistent():
    assert len({spec.name for spec in OPTIONS}) == len(OPTIONS)
    assert len({spec.envvar for spec in OPTIONS}) == len(OPTIONS)
    assert len({spec.kwarg for spec in OPTIONS}) == len(OPTIONS)
    for spec in OPTIONS:
        assert spec.kind in KINDS, spec
        assert spec.envvar.startswith('GRANIAN_'), spec
        assert spec.flags.startswith('--'), spec
        assert ('/' in spec.flags) == (spec.kind == 'flag'), spec
        if spec.kind == 'flag':
            assert isinstance(spec.default, bool), spec
        assert (spec.enum is not None) == (spec.kind == 'choice'), spec
        if spec.enum is not None:
            assert isinstance(spec.default, spec.enum), spec
        if spec.min is not None or spec.max is not None:
            assert spec.kind in ('int', 'duration'), spec
        if spec.exists or spec.writable:
            assert spec.kind in ('path', 'file', 'dir', 'json_file'), spec
        if spec.shown_default is not None:
            assert spec.default is NO_DEFAULT, spec
        group, _, _ = spec.kwarg.rpartition('.')
        assert not group or group in SETTINGS_GROUPS, spec


# Granian(...) and the HTTP settings against the declaration


def _granian_params():
    params = dict(inspect.signature(Granian.__init__).parameters)
    assert list(params)[:2] == ['self', 'target']
    return {name: param for name, param in params.items() if name not in ('self', 'target')}


def test_granian_keywords_are_all_declared():
    declared = [spec.kwarg for spec in OPTIONS if '.' not in spec.kwarg] + [param.kwarg for param in PYTHON_ONLY]
    assert len(set(declared)) == len(declared)
    assert set(_granian_params()) == set(declared)


@pytest.mark.parametrize('spec', [spec for spec in OPTIONS if '.' not in spec.kwarg], ids=lambda spec: spec.kwarg)
def test_granian_default_is_the_declared_one(spec):
    default = _granian_params()[spec.kwarg].default
    assert _same(default, spec.api_default), (
        f'Granian(..., {spec.kwarg}={default!r}) but {spec.flags} declares {spec.api_default!r}'
    )


@pytest.mark.parametrize('param', PYTHON_ONLY, ids=lambda param: param.kwarg)
def test_granian_python_only_default_is_the_declared_one(param):
    assert _same(_granian_params()[param.kwarg].default, param.default)


@pytest.mark.parametrize('group', sorted(SETTINGS_GROUPS))
def test_settings_defaults_are_the_declared_ones(group):
    fields = {field.name: field.default for field in dataclasses.fields(SETTINGS_GROUPS[group])}
    declared = {spec.kwarg.split('.', 1)[1]: spec for spec in OPTIONS if spec.kwarg.startswith(f'{group}.')}
    assert set(fields) == set(declared)
    for name, spec in declared.items():
        assert _same(fields[name], spec.api_default), (
            f'{SETTINGS_GROUPS[group].__name__}.{name} = {fields[name]!r} but {spec.flags} declares {spec.api_default!r}'
        )


# the command line against the declaration


def test_cli_params_come_from_the_declaration():
    params = granian_cli.cli.params
    assert [param.name for param in params] == ['app', *(spec.name for spec in OPTIONS), 'version']
    assert params[0].help == TARGET_HELP
    for spec, param in zip(OPTIONS, params[1:-1], strict=True):
        assert isinstance(param, click.Option)
        assert '/'.join(param.opts + param.secondary_opts) == spec.flags
        assert (param.envvar, param.help, param.multiple) == (spec.envvar, spec.help, spec.multiple)
        if spec.default is NO_DEFAULT:
            assert repr(param.default) == 'Sentinel.UNSET', spec.flags
        else:
            assert _same(param.default, spec.default), spec.flags
        if isinstance(param.type, click.types._NumberRangeBase):
            assert (param.type.min, param.type.max) == (spec.min, spec.max), spec.flags
        else:
            assert spec.min is spec.max is None, spec.flags
        if spec.enum is not None:
            assert list(param.type.choices) == [member.value for member in spec.enum]
        if spec.shown_default is not None:
            assert param.show_default == spec.shown_default


def test_cli_defaults_reach_granian_as_declared(monkeypatch):
    for name in [name for name in os.environ if name.startswith('GRANIAN_')]:
        monkeypatch.delenv(name)
    ctx = granian_cli.cli.make_context('granian', ['main:app'])
    params = dict(ctx.params)
    del params['app']
    kwargs = granian_cli.build_kwargs(**params)
    for spec in OPTIONS:
        group, _, key = spec.kwarg.rpartition('.')
        value = getattr(kwargs[group], key) if group else kwargs[key]
        assert _same(value, spec.api_default), spec.flags
