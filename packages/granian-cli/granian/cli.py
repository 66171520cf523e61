"""The `granian` command: parses and validates options, then hands them to `granian.server.Granian`.

Nothing here runs server logic, and no option is declared here: each click option is built
from its record in `granian._options.OPTIONS` (flags, env var, type, default, range, help),
the same declaration docs/OPTIONS.md is generated from, and `build_kwargs` hands every
parsed value to the `Granian` keyword argument that record names.
"""

import json
import pathlib
import re
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

import click
from click._utils import UNSET
from click.core import ParameterSource
from granian._options import NO_DEFAULT, OPTIONS, SETTINGS_GROUPS, TARGET_HELP
from granian._options import Option as OptionSpec
from granian.errors import ConfigurationError, FatalError
from granian.server import Granian

__all__ = [
    'Duration',
    'EnumType',
    'OctalIntType',
    'build_kwargs',
    'cli',
    'entrypoint',
    'option',
    'parse_duration',
]

_Decorated = TypeVar('_Decorated', bound=Callable[..., Any])


# Units in the only order accepted: each at most once, largest first, so `1h30m` reads
# unambiguously and `30m1h` is rejected rather than guessed at.
_DURATION_RE = re.compile(r'(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?')
_DURATION_UNITS = {'d': 86_400, 'h': 3_600, 'm': 60, 's': 1}


def parse_duration(value: str) -> int:
    """Turn `30`, `30s`, `5m`, `2h`, `1d` or a combination like `1h30m` into seconds.

    Raises ValueError on anything else.
    """
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION_RE.fullmatch(text)
    # The regex matches the empty string too: a duration needs at least one part.
    if not text or match is None:
        raise ValueError(value)
    return sum(int(amount) * _DURATION_UNITS[unit] for unit, amount in match.groupdict().items() if amount)


class Duration(click.IntRange):
    """A number of seconds, written plainly or as a human-readable duration, within `min`..`max`.

    Subclassing IntRange makes click render the bounds in the help as it does for INTEGER
    RANGE options (`5<=x<=600`); the messages name the value as it was given.
    """

    name = 'duration'

    def __init__(self, min: Optional[int] = None, max: Optional[int] = None) -> None:
        super().__init__(min, max)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None:
            return None
        # Defaults are already ints; bool is excluded because it is an int subclass.
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        elif value == '':
            # An empty value is zero seconds, as granian 2.8.7 reads it.
            seconds = 0
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError:
                self.fail(f'{value!r} is not a valid duration', param, ctx)
        if self.min is not None and seconds < self.min:
            self.fail(f'{value!r} is less than the minimum allowed value of {self.min} seconds', param, ctx)
        if self.max is not None and seconds > self.max:
            self.fail(f'{value!r} is greater than the maximum allowed value of {self.max} seconds', param, ctx)
        return seconds


class EnumType(click.Choice):
    """A case-insensitive choice among the values of `enum`, converted to its member."""

    def __init__(self, enum: Type[Enum], case_sensitive: bool = False) -> None:
        self._enum = enum
        super().__init__([member.value for member in enum], case_sensitive=case_sensitive)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        # Defaults are members already.
        if value is None or isinstance(value, self._enum):
            return value
        return self._enum(super().convert(value, param, ctx))


class OctalIntType(click.ParamType):
    """Unix permission bits: octal when written with a leading zero (`0660`, `0o660`), decimal otherwise.

    The same reading as granian 2.8.7, so that one configuration means the same mode on both;
    a mode outside 0..0o7777 is refused rather than handed to chmod.
    """

    name = 'Octal integer'

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        elif isinstance(value, str):
            try:
                mode = int(value, 8 if value.startswith('0') else 10)
            except ValueError as exc:
                # Python's own wording (`invalid literal for int() with base 8: '0x1ff'`).
                self.fail(str(exc), param, ctx)
        else:
            self.fail(f'{value!r} is not a valid integer', param, ctx)
        if not 0 <= mode <= 0o7777:
            self.fail(f'{value!r} is not a valid permission mode (0 to 0o7777)', param, ctx)
        return mode


def _shown_default(value: Any) -> Any:
    """What the help prints as an option's default: flags as enabled/disabled, enums by value."""
    if isinstance(value, bool):
        return 'enabled' if value else 'disabled'
    if isinstance(value, Enum):
        return value.value
    return value


def _help_conventions(attrs: Dict[str, Any]) -> Dict[str, Any]:
    # Every option shows its env var; one with a default shows it in the form above.
    attrs['show_envvar'] = True
    if 'default' in attrs:
        attrs['show_default'] = _shown_default(attrs['default'])
    return attrs


def option(
    *param_decls: str, cls: Optional[Type[click.Option]] = None, **attrs: Any
) -> Callable[[_Decorated], _Decorated]:
    """`click.option` with the help conventions of the `granian` command.

    The env var is always shown, and a default as `enabled`/`disabled` for flags, by value
    for enums. The env var's name comes from the `auto_envvar_prefix` the command is run
    with, unless `envvar=` names one.
    """
    return click.option(*param_decls, cls=cls, **_help_conventions(attrs))


class _Argument(click.Argument):
    """A positional argument that carries a help text (click arguments have none)."""

    def __init__(self, *args: Any, help: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = help


class GranianCommand(click.Command):
    """Prints the positional arguments' help between the usage line and the options."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        rows = []
        for param in self.get_params(ctx):
            if isinstance(param, _Argument) and param.help:
                text = param.help + ('  [required]' if param.required else '')
                rows.append((param.human_readable_name, text))
        if rows:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_dl(rows)


class _Option(click.Option):
    """Names its env var in an error only when the bad value came from that variable.

    Click names it in every error of an option that shows it, even for a value typed on
    the command line.
    """

    def consume_value(self, ctx: click.Context, opts: Any) -> Tuple[Any, ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[f'granian.cli.source.{self.name}'] = source
        return value, source

    def get_error_hint(self, ctx: Optional[click.Context]) -> str:
        hint = click.Parameter.get_error_hint(self, ctx)
        if ctx is not None and ctx.meta.get(f'granian.cli.source.{self.name}') is ParameterSource.ENVIRONMENT:
            hint += f" (env var: '{self.envvar}')"
        return hint


class _VersionOption(click.Option):
    def __init__(self) -> None:
        super().__init__(
            ['--version'],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_show_version,
            help='Show the version and exit.',
        )
        # Click 8.5 leaves a flag declared without a default unset (read as off) where 8.4
        # stores False; unset is what the option table of granian 2.8.7 shows.
        self.default = UNSET


def _load_log_config(ctx: click.Context, param: click.Parameter, value: Optional[pathlib.Path]) -> Optional[dict]:
    if value is None:
        return None
    try:
        with open(value, encoding='utf-8') as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        problem = f'cannot load JSON from {str(value)!r}: {exc}'
    else:
        # logging.config.dictConfig needs a mapping: catch a list or a scalar here, not at startup.
        if isinstance(data, dict):
            return data
        problem = f'{str(value)!r} must contain a JSON object'
    raise click.BadParameter(f'Unable to parse provided logging config ({problem}).', ctx=ctx, param=param)


def _show_version(ctx: click.Context, param: click.Parameter, value: Optional[bool]) -> None:
    if not value or ctx.resilient_parsing:
        return
    # Imported here so the version is read only when asked for.
    from granian import __version__

    click.echo(f'{ctx.find_root().info_name} {__version__}')
    ctx.exit()


_PATH_KINDS = ('path', 'file', 'dir', 'json_file')


def _click_type(spec: OptionSpec) -> Optional[click.ParamType]:
    """The click type of a declared option; None lets click pick it (text, flags)."""
    kind = spec.kind
    if kind in ('text', 'flag'):
        return None
    if kind == 'int':
        return click.INT if spec.min is None and spec.max is None else click.IntRange(spec.min, spec.max)
    if kind == 'float':
        return click.FLOAT
    if kind == 'choice':
        return EnumType(spec.enum)
    if kind == 'duration':
        return Duration(spec.min, spec.max)
    if kind == 'octal':
        return OctalIntType()
    if kind in _PATH_KINDS:
        return click.Path(
            exists=spec.exists,
            file_okay=kind != 'dir',
            dir_okay=kind in ('dir', 'path'),
            writable=spec.writable,
            path_type=pathlib.Path,
        )
    raise ValueError(f'{spec.flags}: unknown option kind {kind!r}')


def _click_option(spec: OptionSpec) -> click.Option:
    """The click option of one record of `granian._options.OPTIONS`."""
    attrs: Dict[str, Any] = {'type': _click_type(spec), 'multiple': spec.multiple}
    if spec.default is not NO_DEFAULT:
        attrs['default'] = spec.default
    else:
        # No default to show: the help shows the declared wording, if any.
        attrs['show_default'] = spec.shown_default or True
    if spec.kind == 'json_file':
        attrs['callback'] = _load_log_config
    return _Option(spec.flags.split(), help=spec.help, envvar=spec.envvar, **_help_conventions(attrs))


_PARAMS: List[click.Parameter] = [
    _Argument(['app'], required=True, help=TARGET_HELP),
    *(_click_option(spec) for spec in OPTIONS),
    _VersionOption(),
]


def _list(values: Optional[Tuple[Any, ...]]) -> Optional[List[Any]]:
    # An option never given is None for the server, which then applies its own default.
    return list(values) if values else None


def build_kwargs(**params: Any) -> Dict[str, Any]:
    """Map the parsed CLI values (click parameter names, without `app`) to `Granian` keyword arguments."""
    kwargs: Dict[str, Any] = {}
    groups: Dict[str, Dict[str, Any]] = {group: {} for group in SETTINGS_GROUPS}
    for spec in OPTIONS:
        value = params[spec.name]
        if spec.multiple:
            value = _list(value)
        elif spec.enum is not None:
            value = spec.enum(value)
        group, _, key = spec.kwarg.rpartition('.')
        (groups[group] if group else kwargs)[key] = value
    for group, settings in SETTINGS_GROUPS.items():
        kwargs[group] = settings(**groups[group])
    return kwargs


@click.command(
    'granian',
    cls=GranianCommand,
    params=_PARAMS,
    # Env vars are all declared explicitly: no derived names that docs/OPTIONS.md does not list.
    context_settings={'auto_envvar_prefix': None},
)
def cli(app: str, **params: Any) -> None:
    kwargs = build_kwargs(**params)
    try:
        server = Granian(app, **kwargs)
        server.serve()
    except ConfigurationError as exc:
        # A bad combination of options is the user's input error: one line, exit code 2.
        raise click.UsageError(str(exc)) from None
    except FatalError as exc:
        raise click.ClickException(str(exc)) from None


def entrypoint() -> None:
    cli()
