"""granian.utils.proxies called directly with fake scopes: trust rules and what each wrapper changes."""

import asyncio
import copy
import ipaddress
from pathlib import Path

import pytest
from granian.utils.proxies import (
    wrap_asgi_with_proxy_headers,
    wrap_rsgi_with_proxy_headers,
    wrap_wsgi_with_proxy_headers,
)

from .server_support import ROOT

WRAPPERS = [wrap_asgi_with_proxy_headers, wrap_wsgi_with_proxy_headers, wrap_rsgi_with_proxy_headers]
PEER_PORT = 54321


# -- harness: run a wrapper once on a fake request and return what the app saw ------------


def _asgi_scope(peer, headers, kind='http'):
    return {
        'type': kind,
        'asgi': {'version': '3.0', 'spec_version': '2.3'},
        'http_version': '1.1',
        'method': 'GET',
        'scheme': 'ws' if kind == 'websocket' else 'http',
        'path': '/p',
        'raw_path': b'/p',
        'query_string': b'a=1',
        'root_path': '',
        'headers': [(k.encode('latin-1'), v.encode('utf-8')) for k, v in headers],
        'client': None if peer is None else (peer, PEER_PORT),
        'server': ('127.0.0.1', 8000),
        'state': {'shared': True},
    }


def run_asgi(peer, headers=(), trusted='127.0.0.1', kind='http'):
    """(client, scheme) the ASGI app sees."""
    seen = {}

    async def app(scope, receive, send):
        seen['scope'] = scope

    wrapped = wrap_asgi_with_proxy_headers(app, trusted_hosts=trusted)
    asyncio.run(wrapped(_asgi_scope(peer, headers, kind), None, None))
    scope = seen['scope']
    return scope['client'], scope['scheme']


def xff(value, trusted='127.0.0.1', peer='127.0.0.1'):
    """The client address the app sees for one X-Forwarded-For value."""
    client, _ = run_asgi(peer, [('x-forwarded-for', value)], trusted)
    return client


def xfp(value, trusted='127.0.0.1', peer='127.0.0.1', kind='http', forwarded_for=None):
    headers = [('x-forwarded-proto', value)]
    if forwarded_for is not None:
        headers.append(('x-forwarded-for', forwarded_for))
    _, scheme = run_asgi(peer, headers, trusted, kind)
    return scheme


class FakeHeaders:
    def __init__(self, pairs):
        self._pairs = [(k.lower(), v) for k, v in pairs]

    def get(self, name, default=None):
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def get_all(self, name):
        return [value for key, value in self._pairs if key == name]

    def keys(self):
        return [k for k, _ in self._pairs]


class FakeRSGIScope:
    def __init__(self, client, headers=(), proto='http', scheme='http'):
        self.proto = proto
        self.rsgi_version = '1.6'
        self.http_version = '1.1'
        self.server = '127.0.0.1:8000'
        self.client = client
        self.scheme = scheme
        self.method = 'POST'
        self.path = '/some/path'
        self.query_string = 'x=1'
        self.headers = FakeHeaders(headers)
        self.authority = None


def run_rsgi(client, headers=(), trusted='127.0.0.1', proto='http'):
    seen = {}

    async def app(scope, protocol):
        seen['scope'] = scope
        seen['protocol'] = protocol
        return 'done'

    wrapped = wrap_rsgi_with_proxy_headers(app, trusted_hosts=trusted)
    server_scope = FakeRSGIScope(client, headers, proto=proto, scheme='http')
    protocol = object()
    assert asyncio.run(wrapped(server_scope, protocol)) == 'done'
    assert seen['protocol'] is protocol
    return seen['scope'], server_scope


def _environ(peer, headers=()):
    environ = {
        'REQUEST_METHOD': 'GET',
        'PATH_INFO': '/p',
        'QUERY_STRING': '',
        'SERVER_NAME': '127.0.0.1',
        'SERVER_PORT': '8000',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': peer,
        'wsgi.url_scheme': 'http',
        'wsgi.input': object(),
    }
    for name, value in headers:
        environ['HTTP_' + name.upper().replace('-', '_')] = value
    return environ


def run_wsgi(environ, trusted='127.0.0.1'):
    seen = {}

    def app(env, start_response):
        seen['environ'] = env
        seen['start_response'] = start_response
        return [b'body']

    def start_response(status, headers, exc_info=None):
        pass

    wrapped = wrap_wsgi_with_proxy_headers(app, trusted_hosts=trusted)
    assert wrapped(environ, start_response) == [b'body']
    assert seen['start_response'] is start_response
    return seen['environ']


# -- the trusted_hosts setting ------------------------------------------------------------


def test_default_trusts_only_localhost_ipv4():
    assert xff('203.0.113.7') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted='127.0.0.1', peer='127.0.0.2') == ('127.0.0.2', PEER_PORT)
    client, _ = run_asgi('10.0.0.1', [('x-forwarded-for', '203.0.113.7')])  # default trusted_hosts
    assert client == ('10.0.0.1', PEER_PORT)


@pytest.mark.parametrize(
    'trusted',
    [
        '10.0.0.1,10.0.0.2',
        ' 10.0.0.1 , 10.0.0.2 ',
        '10.0.0.1,,10.0.0.2,',
        ['10.0.0.1', '10.0.0.2'],
        ('10.0.0.2', '10.0.0.1'),
        ['10.0.0.1, 10.0.0.2'],
        [ipaddress.ip_address('10.0.0.1'), ipaddress.ip_address('10.0.0.2')],
        '10.0.0.0/30',
        [ipaddress.ip_network('10.0.0.0/30')],
    ],
)
def test_trusted_hosts_forms(trusted):
    for peer in ('10.0.0.1', '10.0.0.2'):
        assert xff('203.0.113.7', trusted=trusted, peer=peer) == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted=trusted, peer='10.0.0.4') == ('10.0.0.4', PEER_PORT)


def test_cidr_ranges_ipv4_and_ipv6():
    trusted = ['192.0.2.0/24', '2001:db8:abcd::/48']
    assert xff('203.0.113.7', trusted, peer='192.0.2.200') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted, peer='192.0.3.1') == ('192.0.3.1', PEER_PORT)
    assert xff('203.0.113.7', trusted, peer='2001:db8:abcd:12::1') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted, peer='2001:db8:abce::1') == ('2001:db8:abce::1', PEER_PORT)


def test_cidr_with_host_bits_means_its_network():
    assert xff('203.0.113.7', trusted='10.1.2.3/16', peer='10.1.99.1') == ('203.0.113.7', 0)


def test_ipv6_addresses():
    trusted = ['::1', 'fd12:3456:789a::1', '[2001:db8::5]']
    assert xff('203.0.113.7', trusted, peer='::1') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted, peer='fd12:3456:789a:0::1') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted, peer='2001:db8::5') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted, peer='fd12:3456:789a::2') == ('fd12:3456:789a::2', PEER_PORT)
    # An IPv6 entry does not make its IPv4 look-alikes trusted, and the other way round.
    assert xff('203.0.113.7', '::1', peer='127.0.0.1') == ('127.0.0.1', PEER_PORT)
    assert xff('203.0.113.7', '127.0.0.1', peer='::1') == ('::1', PEER_PORT)


def test_ipv4_mapped_peer_matches_ipv4_entry():
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    assert xff('203.0.113.7', '127.0.0.1', peer='::ffff:127.0.0.1') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', '10.0.0.0/8', peer='::ffff:10.9.8.7') == ('203.0.113.7', 0)


@pytest.mark.parametrize('trusted', ['*', ['*'], '10.0.0.1, *'])
def test_star_trusts_everyone(trusted):
    assert xff('203.0.113.7', trusted, peer='198.51.100.1') == ('203.0.113.7', 0)
    assert xff('203.0.113.7', trusted, peer='2001:db8::1') == ('203.0.113.7', 0)
    # ... and takes the left-most address, since every hop is trusted.
    assert xff('203.0.113.7, 198.51.100.2, 198.51.100.3', trusted, peer='198.51.100.1') == ('203.0.113.7', 0)


def test_no_peer_address():
    # A Unix socket server has no client address: trusted only under '*'.
    assert run_asgi(None, [('x-forwarded-for', '203.0.113.7')]) == (None, 'http')
    assert run_asgi(None, [('x-forwarded-for', '203.0.113.7')], trusted='*') == (('203.0.113.7', 0), 'http')


@pytest.mark.parametrize('trusted', ['', [], ' , '])
def test_empty_setting_trusts_nobody(trusted):
    assert xff('203.0.113.7', trusted) == ('127.0.0.1', PEER_PORT)


@pytest.mark.parametrize('wrap', WRAPPERS)
@pytest.mark.parametrize(
    'bad',
    [
        'localhost',
        'example.com',
        '1.2.3.256',
        '1.2.3',
        '10.0.0.0/33',
        '10.0.0.0/x',
        '2001:db8::/129',
        'fe80::zz',
        '1.2.3.4:80',
        '[::1]:80',
        '*.example.com',
        '**',
        '１２７.0.0.1',
    ],
)
def test_invalid_entries_refused_with_the_entry_named(wrap, bad):
    with pytest.raises(ValueError) as info:
        wrap(lambda *a: None, trusted_hosts=['127.0.0.1', bad])
    assert repr(bad) in str(info.value)
    with pytest.raises(ValueError):
        wrap(lambda *a: None, trusted_hosts=f'127.0.0.1,{bad}')


@pytest.mark.parametrize('wrap', WRAPPERS)
@pytest.mark.parametrize('bad', [None, 42, b'127.0.0.1', [42], ['127.0.0.1', None]])
def test_wrong_types_refused(wrap, bad):
    with pytest.raises(TypeError, match='trusted_hosts'):
        wrap(lambda *a: None, trusted_hosts=bad)


# -- X-Forwarded-For ----------------------------------------------------------------------


def test_forwarded_for_with_ports_and_ipv6():
    assert xff('203.0.113.7:4711') == ('203.0.113.7', 4711)
    assert xff('2001:db8::7') == ('2001:db8::7', 0)
    assert xff('[2001:db8::7]') == ('2001:db8::7', 0)
    assert xff('[2001:db8::7]:4711') == ('2001:db8::7', 4711)
    assert xff('  203.0.113.7  ') == ('203.0.113.7', 0)
    assert xff('2001:DB8:0:0::7') == ('2001:db8::7', 0)


def test_rightmost_untrusted_address_wins():
    # The client wrote everything left of what our proxy appended.
    assert xff('6.6.6.6, 203.0.113.7') == ('203.0.113.7', 0)
    assert xff('6.6.6.6, 7.7.7.7, 203.0.113.7') == ('203.0.113.7', 0)


def test_client_cannot_pose_as_a_trusted_hop():
    # A client that writes a trusted address itself only moves it further left.
    assert xff('127.0.0.1, 203.0.113.7') == ('203.0.113.7', 0)
    assert xff('203.0.113.66, 127.0.0.1, 203.0.113.7') == ('203.0.113.7', 0)


def test_chain_of_trusted_proxies_is_skipped():
    trusted = ['10.0.0.0/8', '127.0.0.1']
    # client -> 10.0.0.5 -> 10.0.0.6 -> 127.0.0.1 -> app
    assert xff('6.6.6.6, 203.0.113.7, 10.0.0.5, 10.0.0.6', trusted) == ('203.0.113.7', 0)
    assert xff('203.0.113.7:1234, 10.0.0.5:80', trusted) == ('203.0.113.7', 1234)


def test_all_hops_trusted_gives_leftmost():
    trusted = ['10.0.0.0/8', '127.0.0.1']
    assert xff('10.0.0.1, 10.0.0.2, 127.0.0.1', trusted) == ('10.0.0.1', 0)
    assert xff('127.0.0.1') == ('127.0.0.1', 0)


def test_repeated_header_lines_are_one_list_in_order():
    headers = [('x-forwarded-for', '6.6.6.6'), ('x-forwarded-for', '203.0.113.7, 10.0.0.5')]
    client, _ = run_asgi('127.0.0.1', headers, trusted=['127.0.0.1', '10.0.0.0/8'])
    assert client == ('203.0.113.7', 0)


@pytest.mark.parametrize(
    'value',
    [
        '',
        '   ',
        ',,, ,',
        'unknown',
        '_hidden',
        'not-an-ip',
        'example.com',
        '203.0.113.7:99999',
        '203.0.113.7:-1',
        '203.0.113.7:abc',
        '203.0.113.7:',
        '203.0.113.7:80:80',
        '[2001:db8::7',
        '[2001:db8::7]x',
        '[2001:db8::7]:',
        '[203.0.113.7]:80junk',
        '1.2.3.4.5',
        '999.1.1.1',
        '١.٢.٣.٤',
        '203.0.113.7:٨٠',
        '\x00\x01',
        'é',
        '1' * 10000,
        '6.6.6.6, unknown',
        '203.0.113.7, garbage, 127.0.0.1',
        '"203.0.113.7"',
        'for=203.0.113.7',
    ],
)
def test_malformed_forwarded_for_is_ignored(value):
    # The address stays the proxy's; nothing left of a garbage client entry is believed.
    assert xff(value) == ('127.0.0.1', PEER_PORT)
    environ = _environ('127.0.0.1', [('x-forwarded-for', value)])
    assert run_wsgi(environ) is environ
    scope, server_scope = run_rsgi(f'127.0.0.1:{PEER_PORT}', [('x-forwarded-for', value)])
    assert scope is server_scope


def test_garbage_left_of_the_client_does_not_matter():
    assert xff('garbage, 203.0.113.7') == ('203.0.113.7', 0)
    assert xff('unknown,,203.0.113.7') == ('203.0.113.7', 0)


def test_untrusted_peer_ignores_headers():
    headers = [('x-forwarded-for', '203.0.113.7'), ('x-forwarded-proto', 'https')]
    assert run_asgi('198.51.100.1', headers) == (('198.51.100.1', PEER_PORT), 'http')
    assert run_asgi('::1', headers) == (('::1', PEER_PORT), 'http')


# -- X-Forwarded-Proto --------------------------------------------------------------------


def test_forwarded_proto_http_scopes():
    assert xfp('https') == 'https'
    assert xfp('http') == 'http'
    assert xfp(' HTTPS ') == 'https'
    assert xfp('wss') == 'https'
    assert xfp('ws') == 'http'


def test_forwarded_proto_websocket_scopes():
    assert xfp('https', kind='websocket') == 'wss'
    assert xfp('http', kind='websocket') == 'ws'
    assert xfp('wss', kind='websocket') == 'wss'
    assert xfp('WS', kind='websocket') == 'ws'


@pytest.mark.parametrize('value', ['', 'ftp', 'https2', 'h t t p s', 'httpś', '\x00', 'https;', ',,'])
def test_malformed_forwarded_proto_is_ignored(value):
    assert xfp(value) == 'http'
    assert xfp(value, kind='websocket') == 'ws'


def test_forwarded_proto_needs_a_trusted_peer():
    assert xfp('https', peer='198.51.100.1') == 'http'


def test_forwarded_proto_without_forwarded_for_changes_only_the_scheme():
    assert run_asgi('127.0.0.1', [('x-forwarded-proto', 'https')]) == (('127.0.0.1', PEER_PORT), 'https')


def test_forwarded_proto_list_lines_up_with_the_chosen_hop():
    trusted = ['127.0.0.1', '10.0.0.0/8']
    # client -(https)-> 10.0.0.5 -(http)-> 127.0.0.1: both proxies appended.
    assert xfp('https, http', trusted, forwarded_for='203.0.113.7, 10.0.0.5') == 'https'
    # Only our proxy's own hop: its entry is the right-most.
    assert xfp('https, http', trusted, forwarded_for='203.0.113.7') == 'http'
    # A single value is used whatever the depth.
    assert xfp('https', trusted, forwarded_for='203.0.113.7, 10.0.0.5, 10.0.0.6') == 'https'


# -- ASGI wrapper -------------------------------------------------------------------------


def test_asgi_new_scope_server_scope_untouched():
    seen = {}

    async def app(scope, receive, send):
        seen['args'] = (scope, receive, send)
        return 'result'

    async def receive():
        return {}

    async def send(message):
        pass

    server_scope = _asgi_scope('127.0.0.1', [('x-forwarded-for', '203.0.113.7:99'), ('x-forwarded-proto', 'https')])
    before = copy.deepcopy(server_scope)
    wrapped = wrap_asgi_with_proxy_headers(app)
    assert asyncio.run(wrapped(server_scope, receive, send)) == 'result'
    scope, got_receive, got_send = seen['args']
    assert got_receive is receive and got_send is send
    assert server_scope == before
    assert scope is not server_scope
    assert scope['client'] == ('203.0.113.7', 99)
    assert scope['scheme'] == 'https'
    for key in before:
        if key not in ('client', 'scheme'):
            assert scope[key] == before[key], key
    assert scope['state'] is server_scope['state']


def test_asgi_untouched_scopes_are_the_same_object():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope)

    wrapped = wrap_asgi_with_proxy_headers(app)
    untrusted = _asgi_scope('198.51.100.1', [('x-forwarded-for', '203.0.113.7')])
    lifespan = {'type': 'lifespan', 'asgi': {'version': '3.0'}, 'state': {}}
    no_headers = _asgi_scope('127.0.0.1', [])
    for scope in (untrusted, lifespan, no_headers):
        asyncio.run(wrapped(scope, None, None))
    assert seen[0] is untrusted and seen[1] is lifespan and seen[2] is no_headers


def test_asgi_header_names_any_case_and_odd_header_items():
    scope = _asgi_scope('127.0.0.1', [])
    scope['headers'] = [
        (b'X-Forwarded-For', b'203.0.113.7'),
        ('x-forwarded-proto', 'https'),  # str items from a lax server
        (b'x-broken',),
        None,
        (b'x-forwarded-for', None),
    ]
    seen = {}

    async def app(s, receive, send):
        seen['scope'] = s

    asyncio.run(wrap_asgi_with_proxy_headers(app)(scope, None, None))
    assert seen['scope']['client'] == ('203.0.113.7', 0)
    assert seen['scope']['scheme'] == 'https'


def test_asgi_wrapper_is_an_async_callable():
    wrapped = wrap_asgi_with_proxy_headers(lambda *a: None)
    assert asyncio.iscoroutinefunction(wrapped.__call__)


# -- WSGI wrapper -------------------------------------------------------------------------


def test_wsgi_remote_addr_and_scheme():
    environ = _environ('127.0.0.1', [('x-forwarded-for', '6.6.6.6, 203.0.113.7'), ('x-forwarded-proto', 'https')])
    environ['REMOTE_PORT'] = str(PEER_PORT)
    environ['REMOTE_HOST'] = 'proxy.local'
    before = dict(environ)
    seen = run_wsgi(environ)
    assert environ == before
    assert seen is not environ
    assert seen['REMOTE_ADDR'] == '203.0.113.7'
    assert seen['REMOTE_PORT'] == '0'
    assert 'REMOTE_HOST' not in seen
    assert seen['wsgi.url_scheme'] == 'https'
    assert seen['wsgi.input'] is environ['wsgi.input']
    assert seen['PATH_INFO'] == '/p'


def test_wsgi_port_and_ipv6():
    seen = run_wsgi(_environ('::1', [('x-forwarded-for', '[2001:db8::7]:4711')]), trusted='::1')
    assert seen['REMOTE_ADDR'] == '2001:db8::7'
    assert 'REMOTE_PORT' not in seen  # not invented when the server did not set it
    assert seen['wsgi.url_scheme'] == 'http'


def test_wsgi_untrusted_or_garbage_untouched():
    headers = [('x-forwarded-for', '203.0.113.7'), ('x-forwarded-proto', 'https')]
    environ = _environ('198.51.100.1', headers)
    assert run_wsgi(environ) is environ
    environ = _environ('127.0.0.1', [('x-forwarded-for', 'unknown'), ('x-forwarded-proto', 'gopher')])
    assert run_wsgi(environ) is environ
    environ = _environ('127.0.0.1')
    del environ['REMOTE_ADDR']
    environ['HTTP_X_FORWARDED_FOR'] = '203.0.113.7'
    assert run_wsgi(environ) is environ


def test_wsgi_scheme_only():
    seen = run_wsgi(_environ('127.0.0.1', [('x-forwarded-proto', 'wss')]))
    assert seen['REMOTE_ADDR'] == '127.0.0.1'
    assert seen['wsgi.url_scheme'] == 'https'


# -- RSGI wrapper -------------------------------------------------------------------------


def test_rsgi_client_and_scheme_replaced_rest_passed_through():
    headers = [('x-forwarded-for', '6.6.6.6, 203.0.113.7'), ('x-forwarded-proto', 'https'), ('x-custom', 'yes')]
    scope, server_scope = run_rsgi(f'127.0.0.1:{PEER_PORT}', headers)
    assert scope.client == '203.0.113.7:0'
    assert scope.scheme == 'https'
    assert server_scope.client == f'127.0.0.1:{PEER_PORT}' and server_scope.scheme == 'http'
    for name in ('proto', 'rsgi_version', 'http_version', 'server', 'method', 'path', 'query_string', 'authority'):
        assert getattr(scope, name) == getattr(server_scope, name), name
    assert scope.headers is server_scope.headers
    assert scope.headers.get('x-custom') == 'yes'
    assert {'client', 'scheme', 'path', 'headers'} <= set(dir(scope))
    with pytest.raises(AttributeError):
        scope.missing_attribute  # noqa: B018
    with pytest.raises(AttributeError):
        scope.client = 'x'
    with pytest.raises(AttributeError):
        scope.path = '/x'
    assert '203.0.113.7:0' in repr(scope)


def test_rsgi_ports_and_ipv6():
    scope, _ = run_rsgi('127.0.0.1:1', [('x-forwarded-for', '203.0.113.7:4711')])
    assert scope.client == '203.0.113.7:4711'
    scope, _ = run_rsgi('127.0.0.1:1', [('x-forwarded-for', '[2001:db8::7]:4711')])
    assert scope.client == '[2001:db8::7]:4711'
    scope, _ = run_rsgi('127.0.0.1:1', [('x-forwarded-for', '2001:db8::7')])
    assert scope.client == '[2001:db8::7]:0'


@pytest.mark.parametrize(
    'peer, trusted, applied',
    [
        ('[::1]:5000', '::1', True),
        ('[::1]:5000', '127.0.0.1', False),
        ('[::ffff:127.0.0.1]:5000', '127.0.0.1', True),
        ('::1', '::1', True),
        ('127.0.0.1', '127.0.0.1', True),
        ('10.0.0.5:80', '10.0.0.0/8', True),
        ('10.0.0.5:80', '127.0.0.1', False),
        ('', '127.0.0.1', False),
        ('garbage', '127.0.0.1', False),
        ('/run/app.sock', '*', True),
    ],
)
def test_rsgi_peer_parsing(peer, trusted, applied):
    scope, server_scope = run_rsgi(peer, [('x-forwarded-for', '203.0.113.7')], trusted)
    if applied:
        assert scope.client == '203.0.113.7:0'
    else:
        assert scope is server_scope


def test_rsgi_untouched_scopes_are_the_same_object():
    scope, server_scope = run_rsgi('127.0.0.1:1', [])
    assert scope is server_scope
    scope, server_scope = run_rsgi('127.0.0.1:1', [('x-forwarded-for', 'nope'), ('x-forwarded-proto', 'nope')])
    assert scope is server_scope


def test_rsgi_websocket_scheme_stays_http_family():
    scope, _ = run_rsgi('127.0.0.1:1', [('x-forwarded-proto', 'wss')], proto='ws')
    assert scope.scheme == 'https'
    assert scope.proto == 'ws'
    assert scope.client == '127.0.0.1:1'


def test_rsgi_prefers_dunder_rsgi_and_forwards_hooks():
    calls = []

    class App:
        async def __call__(self, scope, protocol):
            calls.append('call')

        async def __rsgi__(self, scope, protocol):
            calls.append(('rsgi', scope.client))

        def __rsgi_init__(self, loop):
            calls.append(('init', loop))

        def __rsgi_del__(self, loop):
            calls.append(('del', loop))

    wrapped = wrap_rsgi_with_proxy_headers(App())
    loop = object()
    wrapped.__rsgi_init__(loop)
    asyncio.run(wrapped(FakeRSGIScope('127.0.0.1:1', [('x-forwarded-for', '203.0.113.7')]), None))
    wrapped.__rsgi_del__(loop)
    assert calls == [('init', loop), ('rsgi', '203.0.113.7:0'), ('del', loop)]


def test_rsgi_hooks_optional():
    async def app(scope, protocol):
        pass

    wrapped = wrap_rsgi_with_proxy_headers(app)
    wrapped.__rsgi_init__(None)
    wrapped.__rsgi_del__(None)


# -- packaging ----------------------------------------------------------------------------


def test_utils_is_a_package_of_the_granian_namespace():
    # `granian/__init__.py` is granian-core's; `granian.utils` is a regular package, as in granian.
    package = ROOT / 'packages' / 'granian-proxies'
    assert (package / 'granian' / 'utils' / 'proxies.py').is_file()
    assert (package / 'granian' / 'utils' / '__init__.py').is_file()
    assert not (package / 'granian' / '__init__.py').exists()
    import granian.utils

    assert granian.utils.__file__ == str(package / 'granian' / 'utils' / '__init__.py')


def test_module_imports_only_the_standard_library():
    import ast
    import sys

    source = Path(ROOT / 'packages' / 'granian-proxies' / 'granian' / 'utils' / 'proxies.py').read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split('.')[0] in sys.stdlib_module_names, name
