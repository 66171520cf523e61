"""granian/_granian.pyi describes the built extension: the same names, the same members."""

import ast
import inspect
from pathlib import Path

import granian._granian as native

STUB = Path(native.__file__).with_name('_granian.pyi')
# Dunders worth checking (the protocol an object speaks); the rest come with every class.
CHECKED_DUNDERS = {'__call__', '__await__', '__aiter__', '__anext__', '__iter__', '__next__', '__getitem__'}
CHECKED_DUNDERS |= {'__contains__', '__len__', '__new__'}


def stub_names():
    tree = ast.parse(STUB.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            names[node.name] = members
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return names


def runtime_members(cls):
    own = set(vars(cls))
    return {name for name in own if not name.startswith('__') or name in CHECKED_DUNDERS}


def test_every_native_name_is_in_the_stub_and_back():
    runtime = {name for name in dir(native) if not name.startswith('__') or name == '__version__'}
    stub = set(stub_names())
    assert runtime - stub == set(), 'native names missing from _granian.pyi'
    assert stub - runtime == set(), '_granian.pyi names that the extension lacks'


def test_stub_classes_have_the_native_members():
    for name, members in stub_names().items():
        obj = getattr(native, name)
        if members is None or not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        assert members == runtime_members(obj), name


def test_stub_function_parameters_match():
    tree = ast.parse(STUB.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            stub_params = [arg.arg for arg in node.args.args]
            native_params = list(inspect.signature(getattr(native, node.name)).parameters)
            assert stub_params == native_params, node.name
