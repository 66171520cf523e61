"""The shape of an option record (see `granian._options`, where every option is declared)."""

from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional, Type

__all__ = ['KINDS', 'NO_DEFAULT', 'Option', 'PythonOnly', 'flag']


class _NoDefault:
    """The option declares no default: the command line leaves it unset, `Granian` takes None."""

    def __repr__(self) -> str:
        return 'NO_DEFAULT'


NO_DEFAULT: Any = _NoDefault()

# The kinds of value an option takes, with how docs/OPTIONS.md names them.
KINDS = {
    'text': 'text',
    'int': 'integer',
    'float': 'number',
    'flag': 'flag',
    'choice': 'choice',
    # Seconds, written plainly or as `30s`, `5m`, `2h`, `1d`, `1h30m`.
    'duration': 'duration',
    # Unix permission bits: octal with a leading zero (`0660`), decimal otherwise.
    'octal': 'octal integer',
    'path': 'path',
    'file': 'file',
    'dir': 'directory',
    # A JSON file, handed to `Granian` parsed (a dict for logging.config.dictConfig).
    'json_file': 'JSON file',
}


@dataclass(frozen=True)
class Option:
    """One option: `flags` as the command line spells it (`--ws/--no-ws` for a flag pair),
    `kwarg` the `Granian` keyword argument (or `group.field`, see SETTINGS_GROUPS)."""

    flags: str
    kwarg: str
    envvar: str
    help: str
    kind: str = 'text'
    default: Any = NO_DEFAULT
    min: Optional[int] = None
    max: Optional[int] = None
    enum: Optional[Type[Enum]] = None
    multiple: bool = False
    # Path kinds: the path must exist / be writable.
    exists: bool = False
    writable: bool = False
    # What the help shows as the default when that is not the value itself.
    shown_default: Optional[str] = None

    @property
    def name(self) -> str:
        """The command line's name of the parsed value: `--ws/--no-ws` gives `ws`."""
        return self.flags.split('/')[0].lstrip('-').replace('-', '_')

    @property
    def api_default(self) -> Any:
        """The default `Granian` takes for this keyword (or settings field)."""
        return None if self.default is NO_DEFAULT else self.default


@dataclass(frozen=True)
class PythonOnly:
    """A keyword argument of `Granian` that no command line option sets."""

    kwarg: str
    default: Any
    help: str


def flag(name: str, kwarg: str, envvar: str, help: str, default: bool) -> Option:
    return Option(f'--{name}/--no-{name}', kwarg, envvar, help, kind='flag', default=default)
