"""`granian._internal` (loading the target and the env files) and `granian.errors`."""

import itertools
import os
import subprocess
import sys
import textwrap

import pytest
from granian._internal import (
    build_env_loader,
    get_import_components,
    load_env,
    load_module,
    load_target,
    patch_pypath,
    prepare_import,
    require_callable,
)
from granian.errors import ConfigurationError, FatalError, PidFileError

from .server_support import ROOT, free_port

_counter = itertools.count()


@pytest.fixture(autouse=True)
def isolated_imports():
    """Each test's sys.path and imported modules are undone."""
    path, modules = sys.path[:], set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def unique(prefix: str) -> str:
    return f'{prefix}_{os.getpid()}_{next(_counter)}'


def write(path, text: str = '') -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


# -- targets -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('target', 'components'),
    [
        ('main:app', ['main', 'app']),
        ('main', ['main', None]),
        ('pkg.mod:obj.inner', ['pkg.mod', 'obj.inner']),
        ('src/app.py:make', ['src/app.py', 'make']),
        ('main:app:extra', ['main', 'app:extra']),
        # A colon that starts a path is part of it (Windows drives).
        ('C:\\srv\\app.py:app', ['C:\\srv\\app.py', 'app']),
        ('C:/srv/app.py', ['C:/srv/app.py', None]),
    ],
)
def test_get_import_components(target, components):
    assert get_import_components(target) == components


def test_patch_pypath():
    patch_pypath()
    assert sys.path[0] == ''
    patch_pypath()
    assert sys.path[1] != ''  # already first: not stacked again
    patch_pypath(ROOT / 'tests' / '..')
    assert sys.path[0] == str(ROOT)


def test_prepare_import_of_a_package_file(tmp_path):
    pkg = unique('pkg')
    write(tmp_path / 'src' / pkg / '__init__.py')
    write(tmp_path / 'src' / pkg / 'sub' / '__init__.py')
    write(tmp_path / 'src' / pkg / 'sub' / 'app.py')
    assert prepare_import(str(tmp_path / 'src' / pkg / 'sub' / 'app.py')) == f'{pkg}.sub.app'
    assert sys.path[0] == os.path.realpath(tmp_path / 'src')
    assert prepare_import(str(tmp_path / 'src' / pkg / 'sub' / '__init__.py')) == f'{pkg}.sub'
    assert prepare_import(str(tmp_path / 'src' / pkg)) == pkg


def test_prepare_import_of_a_module_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert prepare_import('some.module') == 'some.module'
    assert sys.path[0] == os.path.realpath(tmp_path)


def test_load_module(tmp_path):
    name = unique('mod')
    write(tmp_path / f'{name}.py', 'VALUE = 1\n')
    sys.path.insert(0, str(tmp_path))
    assert load_module(name).VALUE == 1
    assert load_module(unique('missing'), raise_on_failure=False) is None
    with pytest.raises(FatalError, match=r"cannot import module 'nope_[0-9_]+': no such module"):
        load_module(unique('nope'))


@pytest.mark.parametrize(
    ('code', 'error'),
    [
        (
            'import granian_tests_not_installed\n',
            'ModuleNotFoundError("No module named \'granian_tests_not_installed\'")',
        ),
        ('raise RuntimeError("no database")\n', "RuntimeError('no database')"),
    ],
)
def test_a_module_that_fails_to_import_is_refused_even_without_raise_on_failure(tmp_path, code, error):
    name = unique('broken')
    write(tmp_path / f'{name}.py', code)
    sys.path.insert(0, str(tmp_path))
    for raise_on_failure in (True, False):
        with pytest.raises(FatalError) as info:
            load_module(name, raise_on_failure=raise_on_failure)
        assert str(info.value) == f'cannot import module {name!r}: {error}'


@pytest.fixture
def app_dir(tmp_path):
    name = unique('target')
    write(
        tmp_path / f'{name}.py',
        """
        import os

        app = 'the app'
        CWD = os.getcwd()

        class Holder:
            inner = 'inner app'

        def make():
            return 'made'

        def explode():
            raise ValueError('bad settings')
        """,
    )
    return tmp_path, name


def test_load_target_forms(app_dir, monkeypatch):
    directory, name = app_dir
    monkeypatch.chdir(directory)
    assert load_target(name) == 'the app'
    assert load_target(f'{name}:app') == 'the app'
    assert load_target(f'{name}:Holder.inner') == 'inner app'
    assert load_target(f'{name}:make', factory=True) == 'made'
    assert load_target(f'{name}.py:app') == 'the app'


def test_load_target_from_a_file_path(app_dir, monkeypatch, tmp_path_factory):
    directory, name = app_dir
    monkeypatch.chdir(tmp_path_factory.mktemp('elsewhere'))
    assert load_target(f'{directory / name}.py:Holder.inner') == 'inner app'


def test_load_target_wd_puts_the_directory_on_the_path_without_changing_directory(
    app_dir, monkeypatch, tmp_path_factory
):
    directory, name = app_dir
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    monkeypatch.chdir(elsewhere)
    assert load_target(f'{name}:app', wd=directory) == 'the app'
    assert os.getcwd() == str(elsewhere)
    assert sys.modules[name].CWD == str(elsewhere)


@pytest.mark.parametrize(
    ('suffix', 'kwargs', 'message'),
    [
        (':nope', {}, "cannot find 'nope' in module '{name}'"),
        (':Holder.nope', {}, "cannot find 'Holder.nope' in module '{name}'"),
        (':explode', {'factory': True}, "the factory '{name}:explode' raised ValueError('bad settings')"),
    ],
)
def test_load_target_refusals(app_dir, monkeypatch, suffix, kwargs, message):
    directory, name = app_dir
    monkeypatch.chdir(directory)
    with pytest.raises(FatalError) as info:
        load_target(name + suffix, **kwargs)
    assert str(info.value) == message.format(name=name)


def test_load_target_of_a_missing_module_or_no_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = unique('absent')
    with pytest.raises(FatalError, match=f"cannot import module '{missing}': no such module"):
        load_target(f'{missing}:app')
    with pytest.raises(FatalError, match='invalid target'):
        load_target(':app')


def test_require_callable():
    assert require_callable(len, 'x:len') is len
    with pytest.raises(FatalError, match="the target 'x:y' is not callable"):
        require_callable('text', 'x:y')


# -- env files -----------------------------------------------------------------------------------------------------


@pytest.fixture
def env_keys():
    """Names for variables that no longer exist after the test."""
    keys = [unique('GRANIAN_TEST_ENV') for _ in range(3)]
    yield keys
    for key in keys:
        os.environ.pop(key, None)


def test_load_env_never_overrides(tmp_path, env_keys):
    pytest.importorskip('dotenv')
    first, second, preset = env_keys
    os.environ[preset] = 'from the environment'
    write(tmp_path / 'a.env', f'{first}=from-a\n{preset}=from-a\n')
    write(tmp_path / 'b.env', f'{first}=from-b\n{second}=from-b\n')
    load_env([tmp_path / 'a.env', tmp_path / 'b.env'])
    assert os.environ[first] == 'from-a'
    assert os.environ[second] == 'from-b'
    assert os.environ[preset] == 'from the environment'


def test_env_loader_keeps_the_original_environment_and_reloads(tmp_path, env_keys):
    pytest.importorskip('dotenv')
    first, second, preset = env_keys
    os.environ[preset] = 'original'
    loader = build_env_loader()
    write(tmp_path / 'a.env', f'{first}=from-a\n{preset}=from-a\n')
    write(tmp_path / 'b.env', f'{first}=from-b\n')
    loader([tmp_path / 'a.env', tmp_path / 'b.env'])
    assert os.environ[first] == 'from-b'  # the later file wins
    assert os.environ[preset] == 'original'
    write(tmp_path / 'b.env', f'{first}=edited\n{second}=new\n')
    loader([tmp_path / 'a.env', tmp_path / 'b.env'])
    assert os.environ[first] == 'edited'
    assert os.environ[second] == 'new'


def test_env_files_without_python_dotenv_are_refused(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'dotenv', None)
    with pytest.raises(ConfigurationError, match=r'pip install granian\[dotenv\]'):
        load_env([tmp_path / '.env'])
    loader = build_env_loader()
    with pytest.raises(ConfigurationError, match=r'pip install granian\[dotenv\]'):
        loader([tmp_path / '.env'])


# -- errors --------------------------------------------------------------------------------------------------------


def test_error_hierarchy():
    assert issubclass(ConfigurationError, FatalError)
    assert issubclass(PidFileError, FatalError)
    assert issubclass(FatalError, Exception)
    assert not issubclass(PidFileError, ConfigurationError)


@pytest.mark.skipif(sys.platform == 'win32', reason='winloop is available on Windows')
def test_except_fatal_error_catches_a_configuration_error():
    from granian import Granian

    with pytest.raises(FatalError) as info:
        Granian('tests.apps.rsgi_app:app', interface='rsgi', loop='winloop')
    assert type(info.value) is ConfigurationError


def test_a_pid_file_naming_a_running_process_is_a_pid_file_error(tmp_path):
    pid_file = tmp_path / 'granian.pid'
    pid_file.write_text(f'{os.getpid()}\n')  # this test process: certainly running
    script = textwrap.dedent(
        f"""
        from granian import Granian
        from granian.errors import PidFileError

        server = Granian('tests.apps.rsgi_app:app', interface='rsgi', port={free_port()}, pid_file={str(pid_file)!r})
        try:
            server.startup(None, None)
        except PidFileError as exc:
            print('PidFileError:', exc)
        """
    )
    result = subprocess.run(
        [sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'PidFileError: the PID file {pid_file} names a running process ({os.getpid()})' in result.stdout
    assert pid_file.read_text() == f'{os.getpid()}\n'  # left alone
