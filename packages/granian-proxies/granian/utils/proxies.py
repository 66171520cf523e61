"""Middleware that trusts a reverse proxy's forwarded headers.

Nothing in ASGI, WSGI or RSGI says how a server should treat `X-Forwarded-For` and
`X-Forwarded-Proto`, so granian leaves the request scope alone and offers these
wrappers instead. A wrapped application sees the client address taken from
`X-Forwarded-For` and the scheme taken from `X-Forwarded-Proto`, but only for requests
whose direct peer is one of the `trusted_hosts`; anything else reaches the application
untouched.

This module depends on the standard library only: the wrappers work under any ASGI or
WSGI server, not just granian.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = [
    'wrap_asgi_with_proxy_headers',
    'wrap_rsgi_with_proxy_headers',
    'wrap_wsgi_with_proxy_headers',
]

TrustedHosts = Union[str, Iterable[Any]]

_IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)
_PORT = re.compile(r'[0-9]{1,5}', re.ASCII)
_HTTP_SCHEMES = {'http': 'http', 'https': 'https', 'ws': 'http', 'wss': 'https'}
_WS_SCHEMES = {'http': 'ws', 'https': 'wss', 'ws': 'ws', 'wss': 'wss'}


def _parse_ip(value: str) -> Optional[_IPAddress]:
    """An address, or None when `value` is not one (never raises)."""
    if not value or not value.isascii():
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _unmapped(ip: _IPAddress) -> _IPAddress:
    # A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`: compare them as IPv4.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _parse_host_port(value: str) -> Optional[Tuple[_IPAddress, Optional[int]]]:
    """Splits `addr`, `addr:port`, `[v6]` or `[v6]:port` into (address, port or None).

    Returns None for anything that is not an IP address with an optional valid port.
    """
    value = value.strip()
    port: Optional[str] = None
    if value.startswith('['):
        host, sep, rest = value[1:].partition(']')
        if not sep:
            return None
        if rest:
            if not rest.startswith(':'):
                return None
            port = rest[1:]
    elif value.count(':') == 1:
        host, _, port = value.partition(':')
    else:
        # IPv4 without a port, or a bare IPv6 address (which cannot carry a port unbracketed).
        host = value
    ip = _parse_ip(host)
    if ip is None:
        return None
    if port is None:
        return ip, None
    if not _PORT.fullmatch(port) or int(port) > 65535:
        return None
    return ip, int(port)


def _split_values(values: Iterable[Any]) -> List[str]:
    """Every comma-separated element of every value of a (possibly repeated) header, blanks dropped."""
    items = []
    for value in values:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode('latin-1')
        elif not isinstance(value, str):
            continue
        items.extend(item.strip() for item in value.split(','))
    return [item for item in items if item]


class _Forwarded:
    """What a trusted request's forwarded headers say: client address and port, and scheme."""

    __slots__ = ('host', 'port', 'scheme')

    def __init__(self, host: Optional[str], port: int, scheme: Optional[str]):
        self.host = host
        self.port = port
        self.scheme = scheme


class _Trust:
    """The parsed `trusted_hosts` setting and the forwarded-header rules built on it."""

    def __init__(self, trusted_hosts: TrustedHosts):
        self.everyone = False
        self.addresses: set = set()
        self.networks: List[_IPNetwork] = []
        for entry in self._entries(trusted_hosts):
            self._add(entry)

    @staticmethod
    def _entries(trusted_hosts: TrustedHosts) -> List[str]:
        if isinstance(trusted_hosts, str):
            items: Sequence[Any] = [trusted_hosts]
        elif isinstance(trusted_hosts, (bytes, bytearray)) or trusted_hosts is None:
            raise TypeError(f'trusted_hosts must be a string or a list of strings, not {type(trusted_hosts).__name__}')
        else:
            try:
                items = list(trusted_hosts)
            except TypeError:
                raise TypeError(
                    f'trusted_hosts must be a string or a list of strings, not {type(trusted_hosts).__name__}'
                ) from None
        entries = []
        for item in items:
            if isinstance(item, _IP_TYPES):
                item = str(item)
            if not isinstance(item, str):
                raise TypeError(f'trusted_hosts entries must be strings, not {type(item).__name__}: {item!r}')
            entries.extend(part.strip() for part in item.split(','))
        return [entry for entry in entries if entry]

    def _add(self, entry: str) -> None:
        if entry == '*':
            self.everyone = True
            return
        error = ValueError(
            f'invalid trusted host {entry!r}: expected an IP address (e.g. 192.0.2.1, 2001:db8::1), '
            f"a CIDR range (e.g. 192.0.2.0/24, 2001:db8::/48) or '*'"
        )
        if not entry.isascii():
            raise error
        if '/' in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise error from None
            self.networks.append(network)
            return
        host = entry[1:-1] if entry.startswith('[') and entry.endswith(']') else entry
        ip = _parse_ip(host)
        if ip is None:
            raise error
        self.addresses.add(_unmapped(ip))

    def trusts_ip(self, ip: _IPAddress) -> bool:
        if self.everyone:
            return True
        ip = _unmapped(ip)
        if ip in self.addresses:
            return True
        return any(ip in network for network in self.networks)

    def trusts_peer(self, host: Optional[str]) -> bool:
        """Whether the direct peer `host` (as the server reports it) is trusted."""
        if self.everyone:
            return True
        if not host:
            return False
        if host.startswith('[') and host.endswith(']'):
            host = host[1:-1]
        ip = _parse_ip(host)
        return ip is not None and self.trusts_ip(ip)

    def resolve(
        self, peer: Optional[str], forwarded_for: Iterable[Any], forwarded_proto: Iterable[Any]
    ) -> Optional[_Forwarded]:
        """What to change for a request from `peer`; None when it is to be left alone.

        `forwarded_for` and `forwarded_proto` are the raw values of every occurrence of the
        two headers, in order. Values that cannot be used are ignored, never raised on.
        """
        if not self.trusts_peer(peer):
            return None

        # Each proxy appends the address it got the request from: walking from the right,
        # the first address that is not one of our proxies is the client. Everything to its
        # left was sent by that client and can be anything.
        hops = _split_values(forwarded_for)
        host: Optional[str] = None
        port = 0
        depth = 0
        for index, hop in enumerate(reversed(hops)):
            parsed = _parse_host_port(hop)
            if parsed is None:
                # A trusted proxy reported something that is not an address (`unknown`,
                # an obfuscated name, garbage): looking further left would trust the client.
                host = None
                break
            ip, hop_port = parsed
            host, port, depth = str(ip), hop_port or 0, index
            if not self.trusts_ip(ip):
                break

        # When proxies append to X-Forwarded-Proto too, its entries line up with the hops;
        # a single value was set by the proxy that talked to the client, or the only one.
        protos = [item.lower() for item in _split_values(forwarded_proto)]
        scheme = None
        if protos:
            proto = protos[-1 - min(depth if host is not None else 0, len(protos) - 1)]
            if proto in _HTTP_SCHEMES:
                scheme = proto

        if host is None and scheme is None:
            return None
        return _Forwarded(host, port, scheme)


def _format_addr(host: str, port: int) -> str:
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


def _split_addr(value: Any) -> Optional[str]:
    """The host part of an RSGI `client` string (`addr:port`, `[v6]:port`, or a bare address)."""
    if not isinstance(value, str):
        return None
    parsed = _parse_host_port(value)
    if parsed is not None:
        return str(parsed[0])
    return value.strip()


class _ProxyHeadersASGI:
    def __init__(self, app: Callable[..., Any], trust: _Trust):
        self.app = app
        self.trust = trust

    async def __call__(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> Any:
        kind = scope.get('type')
        if kind in ('http', 'websocket'):
            scope = self._rewrite(scope, websocket=kind == 'websocket')
        return await self.app(scope, receive, send)

    def _rewrite(self, scope: dict, websocket: bool) -> dict:
        client = scope.get('client')
        peer = client[0] if isinstance(client, (tuple, list)) and client else None
        forwarded_for, forwarded_proto = [], []
        for item in scope.get('headers') or ():
            try:
                name, value = item
            except (TypeError, ValueError):
                continue
            if isinstance(name, (bytes, bytearray)):
                name = bytes(name).decode('latin-1')
            if not isinstance(name, str):
                continue
            name = name.lower()
            if name == 'x-forwarded-for':
                forwarded_for.append(value)
            elif name == 'x-forwarded-proto':
                forwarded_proto.append(value)
        forwarded = self.trust.resolve(peer if isinstance(peer, str) else None, forwarded_for, forwarded_proto)
        if forwarded is None:
            return scope
        scope = dict(scope)
        if forwarded.host is not None:
            scope['client'] = (forwarded.host, forwarded.port)
        if forwarded.scheme is not None:
            scope['scheme'] = (_WS_SCHEMES if websocket else _HTTP_SCHEMES)[forwarded.scheme]
        return scope


class _ProxyHeadersWSGI:
    def __init__(self, app: Callable[..., Any], trust: _Trust):
        self.app = app
        self.trust = trust

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        forwarded = self.trust.resolve(
            environ.get('REMOTE_ADDR'),
            [environ.get('HTTP_X_FORWARDED_FOR')],
            [environ.get('HTTP_X_FORWARDED_PROTO')],
        )
        if forwarded is not None:
            environ = dict(environ)
            if forwarded.host is not None:
                environ['REMOTE_ADDR'] = forwarded.host
                # Whatever the server said about the peer describes the proxy, not the client.
                environ.pop('REMOTE_HOST', None)
                if 'REMOTE_PORT' in environ:
                    environ['REMOTE_PORT'] = str(forwarded.port)
            if forwarded.scheme is not None:
                environ['wsgi.url_scheme'] = _HTTP_SCHEMES[forwarded.scheme]
        return self.app(environ, start_response)


class _RSGIScope:
    """A server's RSGI scope with `client` and `scheme` replaced; every other attribute is the server's."""

    __slots__ = ('_client', '_scheme', '_scope')

    def __init__(self, scope: Any, client: str, scheme: str):
        object.__setattr__(self, '_scope', scope)
        object.__setattr__(self, '_client', client)
        object.__setattr__(self, '_scheme', scheme)

    @property
    def client(self) -> str:
        return self._client

    @property
    def scheme(self) -> str:
        return self._scheme

    def __getattr__(self, name: str) -> Any:
        # Explicit lookup: a half-built copy (no `_scope` yet) raises instead of recursing.
        return getattr(object.__getattribute__(self, '_scope'), name)

    def __dir__(self) -> List[str]:
        return sorted(set(dir(self._scope)) | {'client', 'scheme'})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f'RSGI scope attribute {name!r} is read-only')

    def __repr__(self) -> str:
        return f'<forwarded RSGI scope client={self._client!r} scheme={self._scheme!r} of {self._scope!r}>'


def _rsgi_header_values(headers: Any, name: str) -> List[Any]:
    get_all = getattr(headers, 'get_all', None)
    if get_all is not None:
        return list(get_all(name) or ())
    value = headers.get(name) if headers is not None else None
    return [] if value is None else [value]


class _ProxyHeadersRSGI:
    def __init__(self, app: Any, trust: _Trust):
        self.app = app
        self.trust = trust
        # An object that is both an ASGI and an RSGI app is served through `__rsgi__`.
        self._call = getattr(app, '__rsgi__', app)

    async def __call__(self, scope: Any, protocol: Any) -> Any:
        return await self._call(self._rewrite(scope), protocol)

    def _rewrite(self, scope: Any) -> Any:
        headers = scope.headers
        forwarded = self.trust.resolve(
            _split_addr(scope.client),
            _rsgi_header_values(headers, 'x-forwarded-for'),
            _rsgi_header_values(headers, 'x-forwarded-proto'),
        )
        if forwarded is None:
            return scope
        client = scope.client if forwarded.host is None else _format_addr(forwarded.host, forwarded.port)
        scheme = scope.scheme if forwarded.scheme is None else _HTTP_SCHEMES[forwarded.scheme]
        return _RSGIScope(scope, client, scheme)

    def __rsgi_init__(self, loop: Any) -> None:
        hook = getattr(self.app, '__rsgi_init__', None)
        if hook is not None:
            hook(loop)

    def __rsgi_del__(self, loop: Any) -> None:
        hook = getattr(self.app, '__rsgi_del__', None)
        if hook is not None:
            hook(loop)


def wrap_asgi_with_proxy_headers(app: Callable[..., Any], trusted_hosts: TrustedHosts = '127.0.0.1') -> Any:
    """Wraps an ASGI 3 app: for trusted peers, `client` and `scheme` come from the forwarded headers.

    The app receives a new scope dict; the server's one is never changed. `client` becomes
    `(address, port)`, the port being 0 when the forwarded entry carries none. Lifespan and
    other scope types pass through untouched.
    """
    return _ProxyHeadersASGI(app, _Trust(trusted_hosts))


def wrap_wsgi_with_proxy_headers(app: Callable[..., Any], trusted_hosts: TrustedHosts = '127.0.0.1') -> Any:
    """Wraps a WSGI app: for trusted peers, `REMOTE_ADDR` and `wsgi.url_scheme` come from the forwarded headers.

    The app receives a copy of the environ when something changes.
    """
    return _ProxyHeadersWSGI(app, _Trust(trusted_hosts))


def wrap_rsgi_with_proxy_headers(app: Any, trusted_hosts: TrustedHosts = '127.0.0.1') -> Any:
    """Wraps an RSGI app: for trusted peers, `scope.client` and `scope.scheme` come from the forwarded headers.

    The app receives a scope object that answers every other attribute from the server's
    scope. `__rsgi_init__` and `__rsgi_del__` of the wrapped app are called as usual.
    """
    return _ProxyHeadersRSGI(app, _Trust(trusted_hosts))
