"""The code base keeps its shape: see tools/check_layout.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tools'))

import check_layout


def test_no_import_circle_no_python_in_http_no_overlong_file():
    assert check_layout.problems() == []


def test_the_checker_sees_a_rust_circle(tmp_path, monkeypatch):
    crate = tmp_path / 'src'
    (crate / 'a').mkdir(parents=True)
    (crate / 'lib.rs').write_text('mod a;\nmod b;\n')
    (crate / 'a' / 'mod.rs').write_text('pub mod c;\nuse crate::b::thing;\npub fn g() {}\n')
    (crate / 'a' / 'c.rs').write_text('pub fn f() {}\n')
    (crate / 'b.rs').write_text('use crate::a::g;\npub fn thing() {}\n')
    monkeypatch.setattr(check_layout, 'CRATE', crate)
    assert check_layout.cycles(check_layout.rust_edges()) == [[('a',), ('b',)]]
    # A test module's `super::` is its own file: no edge from there.
    (crate / 'b.rs').write_text('pub fn thing() {}\n#[cfg(test)]\nmod tests { use crate::a::g; }\n')
    assert check_layout.cycles(check_layout.rust_edges()) == []


def test_the_checker_sees_a_python_circle_through_a_function_import(tmp_path, monkeypatch):
    root = tmp_path / 'pkg'
    package = root / 'granian'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text('')
    (package / 'one.py').write_text('from granian.two import x\n')
    (package / 'two.py').write_text('x = 1\ndef later():\n    from . import one\n')
    monkeypatch.setattr(check_layout, 'PYTHON_ROOTS', [root])
    assert check_layout.cycles(check_layout.python_edges()) == [['granian.one', 'granian.two']]
