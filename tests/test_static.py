"""Static files served by the core (`--static-path-*`), through real servers and raw sockets.

Raw HTTP/1 sockets send request targets byte for byte: a client library would normalise `..`
and percent-encodings away before the server ever saw them.
"""

import email.utils
import hashlib
import os
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from .rsgi_support import HOST, TIMEOUT, RawH2, RawHTTP1, RawResponse, request_bytes
from .server_support import ROOT, ServerPool, free_port, granian_cmd, wait_for

APPS = {
    'rsgi': 'tests.apps.static_apps:rsgi_app',
    'asgi': 'tests.apps.static_apps:asgi_app',
    'wsgi': 'tests.apps.static_apps:wsgi_app',
}
RSGI_APP = APPS['rsgi']
SECRET = b'TOP-SECRET-5f1c2a'
ALPHA = b'abcdefghijklmnopqrstuvwxyz'
MTIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC
BIG = os.urandom(1024 * 1024 + 17)  # over the size the core reads whole: the streamed path


# -- the file tree and the servers -----------------------------------------------------------


def build_tree(base: Path) -> Path:
    """`base/pub` is the mount; secrets sit next to it, in places a path could try to reach."""
    (base / 'secret.txt').write_bytes(SECRET + b' in the parent of the mount\n')
    (base / 'private').mkdir()
    (base / 'private' / 'secret.txt').write_bytes(SECRET + b' in a sibling directory\n')
    # Shares the mount's name as a string prefix: `pub-private` must not pass for `pub/...`.
    (base / 'pub-private').mkdir()
    (base / 'pub-private' / 'secret.txt').write_bytes(SECRET + b' in a prefix-named sibling\n')

    pub = base / 'pub'
    pub.mkdir()
    files = {
        'alpha.txt': ALPHA,
        'style.css': b'body { color: red }\n',
        'app.js': b'console.log(1);\n',
        'data.json': b'{"a": 1}\n',
        'page.html': b'<p>page</p>\n',
        'pixel.png': b'\x89PNG\r\n\x1a\n' + b'\0' * 8,
        'blob.unknownext': b'opaque bytes',
        'noext': b'no extension',
        'empty.txt': b'',
        'with space.txt': b'with a space',
        '100%.txt': b'one hundred percent',
        'café.txt': 'café au lait'.encode(),
        '日本語.txt': b'japanese name',
        'a+b.txt': b'a plus b',
        'a%2fb.txt': b'a literal percent-2f',
        'big.bin': BIG,
        'index.html': b'<h1>root index</h1>\n',
    }
    for name, data in files.items():
        (pub / name).write_bytes(data)
    os.utime(pub / 'alpha.txt', (MTIME, MTIME))
    (pub / 'sub').mkdir()
    (pub / 'sub' / 'index.html').write_bytes(b'<h1>sub index</h1>\n')
    (pub / 'sub' / 'leaf.txt').write_bytes(b'leaf')
    (pub / 'noindex').mkdir()
    (pub / 'noindex' / 'file.txt').write_bytes(b'file in a directory without index')
    (pub / 'emptydir').mkdir()
    # Symlinks: inside the mount (served) and out of it (never served).
    (pub / 'inside-link.txt').symlink_to('alpha.txt')
    (pub / 'sublink').symlink_to('sub')
    (pub / 'escape-link.txt').symlink_to('../secret.txt')
    (pub / 'escape-abs-link.txt').symlink_to(base / 'secret.txt')
    (pub / 'outdir').symlink_to('../private')
    (pub / 'prefixdir').symlink_to('../pub-private')
    (pub / 'up').symlink_to('..')
    (pub / 'trap').mkdir()
    (pub / 'trap' / 'index.html').symlink_to('../../secret.txt')
    (pub / 'dangling.txt').symlink_to('missing-target.txt')
    return pub


@pytest.fixture(scope='module')
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp('static'))


@pytest.fixture(scope='module')
def server(tree, tmp_path_factory):
    """The mount at the default route (/static), default expiry, no dir-to-file."""
    with ServerPool(tmp_path_factory.mktemp('plain')) as pool:
        yield pool.start(RSGI_APP, '--static-path-mount', str(tree))


@pytest.fixture(scope='module')
def indexed(tree, tmp_path_factory):
    """The same mount with `--static-path-dir-to-file index.html`."""
    with ServerPool(tmp_path_factory.mktemp('indexed')) as pool:
        yield pool.start(RSGI_APP, '--static-path-mount', str(tree), '--static-path-dir-to-file', 'index.html')


# -- raw requests ------------------------------------------------------------------------------


def fetch(port: int, target: str, headers=(), method: str = 'GET', body: bytes = b'') -> RawResponse:
    """One request on its own connection; the target goes out exactly as given."""
    with RawHTTP1(port) as conn:
        conn.send(request_bytes(method, target, headers=headers, body=body))
        return conn.read_response(head_request=method == 'HEAD')


def fetch_everything(port: int, target: str) -> bytes:
    """Every byte the server sends for one request (`connection: close`), headers included."""
    with RawHTTP1(port) as conn:
        conn.send(request_bytes('GET', target, headers=[('connection', 'close')]))
        return conn.read_to_eof()


def is_app(response: RawResponse) -> bool:
    return response.header('x-from') == 'app' and response.body.startswith(b'app:')


def http_date(value: str) -> datetime:
    return email.utils.parsedate_to_datetime(value)


# -- headers -------------------------------------------------------------------------------------


def test_file_with_every_header(server, tree):
    response = fetch(server.port, '/static/alpha.txt')
    assert response.status == 200
    assert response.body == ALPHA
    assert response.header('content-type') == 'text/plain'
    assert response.header('content-length') == str(len(ALPHA))
    assert response.header('accept-ranges') == 'bytes'
    assert response.header('x-from') is None  # never went through the app
    assert http_date(response.header('last-modified')) == datetime.fromtimestamp(MTIME, timezone.utc)
    etag = response.header('etag')
    assert re.fullmatch(r'"[^"]+"', etag), etag  # a strong, quoted entity tag
    assert response.header('cache-control') == 'max-age=86400'
    # expires = the response date + max-age (give or take the second boundary)
    delta = http_date(response.header('expires')) - http_date(response.header('date'))
    assert abs(delta.total_seconds() - 86400) <= 2


def test_etag_is_stable_and_tracks_the_file(server, tree):
    target = tree / 'changing.txt'
    target.write_bytes(b'first version')
    first = fetch(server.port, '/static/changing.txt')
    assert fetch(server.port, '/static/changing.txt').header('etag') == first.header('etag')
    target.write_bytes(b'second, longer version')
    os.utime(target, (MTIME + 5, MTIME + 5))
    second = fetch(server.port, '/static/changing.txt')
    assert second.body == b'second, longer version'
    assert second.header('etag') != first.header('etag')
    # The old validator no longer matches: the new content, not a 304.
    again = fetch(server.port, '/static/changing.txt', headers=[('if-none-match', first.header('etag'))])
    assert again.status == 200
    assert again.body == b'second, longer version'


# Small files are kept in memory once served, unless changed within the last 2 s (a write may
# still be going on); each request checks the file is still the one kept (device, inode,
# size, modification and change times) with one stat, so any change is seen at once.
CACHED = {
    'same-size.txt': b'version-1',
    'replaced.txt': b'old-content',
    'short-lived.txt': b'here for now',
}


@pytest.fixture(scope='module')
def settled(tree):
    """Files old enough to be kept in memory (their change time more than 2 s ago)."""
    for name, content in CACHED.items():
        (tree / name).write_bytes(content)
        os.utime(tree / name, (MTIME, MTIME))
    (tree / 'moving-link.txt').symlink_to('alpha.txt')
    # A change time cannot be set: the files are old enough once the clock has passed theirs by 2 s.
    paths = [tree / name for name in [*CACHED, 'moving-link.txt']]
    wait_for(lambda: all(time.time() - path.lstat().st_ctime > 2.2 for path in paths), what='the files to settle')
    return tree


def test_cached_file_rewritten_with_the_same_size_is_served_anew(server, settled):
    assert fetch(server.port, '/static/same-size.txt').body == b'version-1'
    assert fetch(server.port, '/static/same-size.txt').body == b'version-1'  # from memory
    (settled / 'same-size.txt').write_bytes(b'version-2')
    os.utime(settled / 'same-size.txt', (MTIME, MTIME))  # even with the old modification time
    assert fetch(server.port, '/static/same-size.txt').body == b'version-2'


def test_cached_file_replaced_by_another_file_is_served_anew(server, settled):
    """Same size, same modification time, a new inode (an atomic replace by rename)."""
    assert fetch(server.port, '/static/replaced.txt').body == b'old-content'
    assert fetch(server.port, '/static/replaced.txt').body == b'old-content'
    fresh = settled / 'replaced.tmp'
    fresh.write_bytes(b'new-content')
    os.utime(fresh, (MTIME, MTIME))
    os.replace(fresh, settled / 'replaced.txt')
    assert fetch(server.port, '/static/replaced.txt').body == b'new-content'


def test_cached_file_removed_is_404(server, settled):
    assert fetch(server.port, '/static/short-lived.txt').status == 200
    assert fetch(server.port, '/static/short-lived.txt').status == 200
    (settled / 'short-lived.txt').unlink()
    assert fetch(server.port, '/static/short-lived.txt').status == 404


def test_cached_symlink_repointed_out_of_the_mount_is_404(server, settled):
    link = settled / 'moving-link.txt'
    assert fetch(server.port, '/static/moving-link.txt').body == ALPHA
    assert fetch(server.port, '/static/moving-link.txt').body == ALPHA
    link.unlink()
    link.symlink_to('../secret.txt')
    response = fetch(server.port, '/static/moving-link.txt')
    assert response.status == 404
    assert SECRET not in response.body


def test_index_file_served_for_a_directory_again_and_again(indexed):
    for _ in range(3):
        response = fetch(indexed.port, '/static/sub/')
        assert (response.status, response.body) == (200, b'<h1>sub index</h1>\n')


@pytest.mark.parametrize(
    'name, mime',
    [
        ('alpha.txt', 'text/plain'),
        ('style.css', 'text/css'),
        ('app.js', 'text/javascript'),
        ('data.json', 'application/json'),
        ('page.html', 'text/html'),
        ('pixel.png', 'image/png'),
        ('blob.unknownext', 'application/octet-stream'),
        ('noext', 'application/octet-stream'),
    ],
)
def test_content_type_from_the_file_name(server, tree, name, mime):
    response = fetch(server.port, f'/static/{name}')
    assert response.status == 200
    assert response.header('content-type') == mime
    assert response.body == (tree / name).read_bytes()


def test_empty_file(server):
    response = fetch(server.port, '/static/empty.txt')
    assert response.status == 200
    assert response.header('content-length') == '0'
    assert response.body == b''


def test_query_string_is_not_part_of_the_file_name(server):
    response = fetch(server.port, '/static/alpha.txt?v=123&cache=bust')
    assert response.status == 200
    assert response.body == ALPHA


@pytest.mark.parametrize(
    'target, name',
    [
        ('/static/with%20space.txt', 'with space.txt'),
        ('/static/100%25.txt', '100%.txt'),
        ('/static/caf%C3%A9.txt', 'café.txt'),
        ('/static/caf%c3%a9.txt', 'café.txt'),
        ('/static/%E6%97%A5%E6%9C%AC%E8%AA%9E.txt', '日本語.txt'),
        ('/static/a+b.txt', 'a+b.txt'),  # `+` is not a space in a path
        ('/static/a%2Bb.txt', 'a+b.txt'),
        ('/static/a%252fb.txt', 'a%2fb.txt'),  # decoded once, not twice
        ('/static/%61lpha.txt', 'alpha.txt'),
        ('/static//alpha.txt', 'alpha.txt'),
        ('/static/./alpha.txt', 'alpha.txt'),
    ],
)
def test_encoded_and_non_ascii_names(server, tree, target, name):
    response = fetch(server.port, target)
    assert response.status == 200, target
    assert response.body == (tree / name).read_bytes()


def test_missing_files_are_404_from_the_static_handler(server):
    for target in ('/static/missing.txt', '/static/sub/missing.txt', '/static/alpha.txt/more', '/static/dangling.txt'):
        response = fetch(server.port, target)
        assert response.status == 404, target
        assert response.body == b'Not found', target  # granian 2.8.7's words
        assert not is_app(response), target


@pytest.mark.parametrize('expires, cache_control, seconds', [('0', None, None), ('1h', 'max-age=3600', 3600)])
def test_static_path_expires(start_server, tree, expires, cache_control, seconds):
    srv = start_server(RSGI_APP, '--static-path-mount', str(tree), '--static-path-expires', expires)
    response = fetch(srv.port, '/static/alpha.txt')
    assert response.status == 200
    assert response.header('cache-control') == cache_control
    if seconds is None:
        assert response.header('expires') is None
    else:
        delta = http_date(response.header('expires')) - http_date(response.header('date'))
        assert abs(delta.total_seconds() - seconds) <= 2
    # The validators do not depend on the expiry.
    assert response.header('etag')
    assert response.header('last-modified')


# -- conditional requests ----------------------------------------------------------------------


@pytest.fixture(scope='module')
def validators(server):
    response = fetch(server.port, '/static/alpha.txt')
    return response.header('etag'), response.header('last-modified')


def test_if_none_match(server, validators):
    etag, _ = validators
    for value in (etag, f'W/{etag}', f'"other", {etag}', '*'):
        response = fetch(server.port, '/static/alpha.txt', headers=[('if-none-match', value)])
        assert response.status == 304, value
        assert response.body == b''
        assert response.header('etag') == etag
    response = fetch(server.port, '/static/alpha.txt', headers=[('if-none-match', '"something-else"')])
    assert response.status == 200
    assert response.body == ALPHA


def test_if_modified_since(server, validators):
    _, last_modified = validators
    later = email.utils.formatdate(MTIME + 3600, usegmt=True)
    earlier = email.utils.formatdate(MTIME - 1, usegmt=True)
    for value in (last_modified, later):
        response = fetch(server.port, '/static/alpha.txt', headers=[('if-modified-since', value)])
        assert response.status == 304, value
        assert response.body == b''
    for value in (earlier, 'not a date'):
        response = fetch(server.port, '/static/alpha.txt', headers=[('if-modified-since', value)])
        assert response.status == 200, value
        assert response.body == ALPHA


def test_if_none_match_wins_over_if_modified_since(server, validators):
    _, last_modified = validators
    headers = [('if-none-match', '"stale"'), ('if-modified-since', last_modified)]
    response = fetch(server.port, '/static/alpha.txt', headers=headers)
    assert response.status == 200
    assert response.body == ALPHA


def test_conditional_head(server, validators):
    etag, _ = validators
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('HEAD', '/static/alpha.txt', headers=[('if-none-match', etag)]))
        assert conn.read_response(head_request=True).status == 304
        # Nothing but the head came back: the next response on the connection parses.
        conn.send(request_bytes('GET', '/static/alpha.txt'))
        assert conn.read_response().body == ALPHA


# -- range requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    'spec, first, last',
    [
        ('bytes=0-9', 0, 9),
        ('bytes=0-0', 0, 0),
        ('bytes=10-', 10, 25),
        ('bytes=-5', 21, 25),
        ('bytes=-100', 0, 25),  # a suffix longer than the file: all of it
        ('bytes=20-1000', 20, 25),  # clamped to the end
        ('bytes=25-25', 25, 25),
    ],
)
def test_range_206(server, spec, first, last):
    response = fetch(server.port, '/static/alpha.txt', headers=[('range', spec)])
    assert response.status == 206, spec
    assert response.header('content-range') == f'bytes {first}-{last}/{len(ALPHA)}'
    assert response.header('content-length') == str(last - first + 1)
    assert response.body == ALPHA[first : last + 1]
    assert response.header('etag')


@pytest.mark.parametrize('spec', ['bytes=26-', 'bytes=1000-2000', 'bytes=-0'])
def test_range_416(server, spec):
    response = fetch(server.port, '/static/alpha.txt', headers=[('range', spec)])
    assert response.status == 416, spec
    assert response.header('content-range') == f'bytes */{len(ALPHA)}'
    assert response.body == b''


def test_range_on_an_empty_file_is_416(server):
    response = fetch(server.port, '/static/empty.txt', headers=[('range', 'bytes=0-')])
    assert response.status == 416
    assert response.header('content-range') == 'bytes */0'


@pytest.mark.parametrize('spec', ['bytes=0-1,5-6', 'items=0-5', 'bytes=abc', 'bytes=9-3', 'bytes=-'])
def test_unusable_ranges_get_the_whole_file(server, spec):
    response = fetch(server.port, '/static/alpha.txt', headers=[('range', spec)])
    assert response.status == 200, spec
    assert response.header('content-range') is None
    assert response.body == ALPHA


def test_range_on_a_streamed_file(server):
    size = len(BIG)
    for spec, first, last in [
        ('bytes=0-99', 0, 99),
        ('bytes=500000-700000', 500000, 700000),
        ('bytes=-33', size - 33, size - 1),
        (f'bytes={size - 1}-', size - 1, size - 1),
    ]:
        response = fetch(server.port, '/static/big.bin', headers=[('range', spec)])
        assert response.status == 206, spec
        assert response.header('content-range') == f'bytes {first}-{last}/{size}'
        assert response.body == BIG[first : last + 1], spec
    whole = fetch(server.port, '/static/big.bin')
    assert whole.status == 200
    assert whole.header('content-length') == str(size)
    assert whole.body == BIG


def test_range_with_a_matching_validator_is_304(server, validators):
    etag, _ = validators
    response = fetch(server.port, '/static/alpha.txt', headers=[('range', 'bytes=0-3'), ('if-none-match', etag)])
    assert response.status == 304


def test_if_range_with_the_current_etag_gives_the_range(server, validators):
    etag, _ = validators
    response = fetch(server.port, '/static/alpha.txt', headers=[('range', 'bytes=0-3'), ('if-range', etag)])
    assert response.status == 206
    assert response.body == b'abcd'


def test_if_range_with_a_stale_validator_gives_the_whole_file(server):
    # RFC 9110 13.1.5: when the If-Range validator does not match, the server MUST ignore Range.
    # A client resuming a download of a file that changed would otherwise splice two versions.
    response = fetch(server.port, '/static/alpha.txt', headers=[('range', 'bytes=0-3'), ('if-range', '"stale-etag"')])
    assert response.status == 200
    assert response.body == ALPHA


# -- HEAD and HTTP/2 ---------------------------------------------------------------------------


def test_head_has_the_headers_and_no_body(server):
    get = fetch(server.port, '/static/alpha.txt')
    with RawHTTP1(server.port) as conn:
        conn.send(request_bytes('HEAD', '/static/alpha.txt'))
        head = conn.read_response(head_request=True)
        conn.send(request_bytes('HEAD', '/static/big.bin'))
        big_head = conn.read_response(head_request=True)
        # No body bytes were sent after either head: the next response starts right away.
        conn.send(request_bytes('GET', '/static/style.css'))
        after = conn.read_response()
    assert head.status == 200
    assert head.header('content-length') == str(len(ALPHA))
    for name in ('content-type', 'etag', 'last-modified', 'cache-control', 'accept-ranges'):
        assert head.header(name) == get.header(name), name
    assert big_head.header('content-length') == str(len(BIG))
    assert after.status == 200
    assert after.body == b'body { color: red }\n'


def test_static_over_http2(server):
    with RawH2(server.port) as conn:
        get = conn.response(conn.request('GET', '/static/caf%C3%A9.txt'))
        head = conn.response(conn.request('HEAD', '/static/big.bin'))
        ranged = conn.response(conn.request('GET', '/static/alpha.txt', headers=[('range', 'bytes=-3')]))
        missing = conn.response(conn.request('GET', '/static/../secret.txt'))
    assert get.status == 200
    assert get.body == 'café au lait'.encode()
    assert head.status == 200
    assert head.body == b''
    assert dict(head.headers)['content-length'] == str(len(BIG))
    assert ranged.status == 206
    assert ranged.body == b'xyz'
    assert dict(ranged.headers)['content-range'] == f'bytes 23-25/{len(ALPHA)}'
    assert missing.status == 404
    assert SECRET not in missing.body


# -- traversal -----------------------------------------------------------------------------------

HOSTILE = [
    # plain dot-dot
    '/static/../secret.txt',
    '/static/../../secret.txt',
    '/static/sub/../../secret.txt',
    '/static/./../secret.txt',
    '/static/..',
    '/static/../private/secret.txt',
    '/static/../pub-private/secret.txt',
    # encoded dots
    '/static/%2e%2e/secret.txt',
    '/static/%2E%2E/secret.txt',
    '/static/.%2e/secret.txt',
    '/static/%2e./secret.txt',
    '/static/%2e%2e',
    # encoded slashes
    '/static/..%2fsecret.txt',
    '/static/..%2Fsecret.txt',
    '/static/sub%2f..%2f..%2fsecret.txt',
    '/static/%2e%2e%2f%2e%2e%2fsecret.txt',
    '/static%2f..%2fsecret.txt',
    # backslashes, raw and encoded
    '/static/..\\secret.txt',
    '/static/sub\\..\\..\\secret.txt',
    '/static/..%5csecret.txt',
    '/static/..%5Csecret.txt',
    '/static/%5c..%5csecret.txt',
    # absolute paths
    '/static//{base}/secret.txt',
    '/static/%2f{base}%2fsecret.txt',
    '/static/%2F{base}/secret.txt',
    '/static/file:///{base}/secret.txt',
    '/static/C:%5csecret.txt',
    # NUL bytes
    '/static/alpha.txt%00',
    '/static/alpha.txt%00.png',
    '/static/..%00/secret.txt',
    '/static/%00../secret.txt',
    # double encoding
    '/static/%252e%252e/secret.txt',
    '/static/%252e%252e%252fsecret.txt',
    '/static/..%252fsecret.txt',
    '/static/.%252e/secret.txt',
    # overlong UTF-8 and other decoders' quirks
    '/static/%c0%ae%c0%ae/secret.txt',
    '/static/%c0%af../secret.txt',
    '/static/%e0%80%ae%e0%80%ae/secret.txt',
    '/static/%u002e%u002e/secret.txt',
    '/static/..;/secret.txt',
    '/static/....//secret.txt',
    '/static/.../secret.txt',
    # through symlinks
    '/static/escape-link.txt',
    '/static/escape-abs-link.txt',
    '/static/outdir/secret.txt',
    '/static/prefixdir/secret.txt',
    '/static/up/secret.txt',
    '/static/up/private/secret.txt',
    # absolute-form request target
    'http://127.0.0.1/static/../secret.txt',
    'http://127.0.0.1/static/%2e%2e/secret.txt',
]


@pytest.mark.parametrize('server_name', ['server', 'indexed'])
def test_traversal_never_leaks(request, tree, server_name):
    srv = request.getfixturevalue(server_name)
    base = str(tree.parent).lstrip('/')
    assert len(HOSTILE) >= 20
    outcomes = {}
    for template in HOSTILE:
        target = template.format(base=base)
        raw = fetch_everything(srv.port, target)
        assert SECRET not in raw, f'{target} leaked the secret'
        status_line, _, rest = raw.partition(b'\r\n')
        status = int(status_line.split()[1])
        body = rest.partition(b'\r\n\r\n')[2]
        # Either the static handler refuses it, or it is not a static path and the app answers.
        assert status == 404 or (status == 200 and body.startswith(b'app:')), (target, raw[:200])
        outcomes[target] = status
    # At most the target that does not start with the route (`/static%2f...`) reaches the app.
    assert {t for t, s in outcomes.items() if s == 200} <= {'/static%2f..%2fsecret.txt'}


def test_trap_index_symlink_is_not_served(indexed):
    # `trap/index.html` points outside the mount: the directory is not served through it.
    for target in ('/static/trap', '/static/trap/', '/static/trap/index.html'):
        raw = fetch_everything(indexed.port, target)
        assert SECRET not in raw
        assert raw.startswith(b'HTTP/1.1 404'), target


# -- symlinks and directories -----------------------------------------------------------------


def test_symlinks_inside_the_mount_are_served(server):
    assert fetch(server.port, '/static/inside-link.txt').body == ALPHA
    assert fetch(server.port, '/static/sublink/leaf.txt').body == b'leaf'


def test_symlinks_out_of_the_mount_are_404(server):
    for target in ('/static/escape-link.txt', '/static/escape-abs-link.txt', '/static/outdir/secret.txt'):
        response = fetch(server.port, target)
        assert response.status == 404, target
        assert SECRET not in response.body


@pytest.mark.parametrize(
    'target', ['/static', '/static/', '/static/sub', '/static/sub/', '/static/emptydir', '/static/noindex/']
)
def test_directories_are_404(server, target):
    response = fetch(server.port, target)
    assert response.status == 404
    assert not is_app(response)


@pytest.mark.parametrize(
    'target, body',
    [
        ('/static/sub/', b'<h1>sub index</h1>\n'),
        ('/static/sub', b'<h1>sub index</h1>\n'),
        ('/static/sublink/', b'<h1>sub index</h1>\n'),
        ('/static/', b'<h1>root index</h1>\n'),
        ('/static', b'<h1>root index</h1>\n'),
        ('/static/sub/leaf.txt', b'leaf'),
    ],
)
def test_dir_to_file(indexed, target, body):
    response = fetch(indexed.port, target)
    assert response.status == 200, target
    assert response.body == body
    if body.startswith(b'<h1>'):
        assert response.header('content-type') == 'text/html'


def test_dir_to_file_without_the_file_is_404(indexed):
    for target in ('/static/noindex/', '/static/emptydir'):
        assert fetch(indexed.port, target).status == 404, target
    assert fetch(indexed.port, '/static/noindex/file.txt').status == 200


# -- the app behind the static routes -----------------------------------------------------------


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
def test_other_methods_on_a_static_route_reach_the_app(server, method):
    response = fetch(server.port, '/static/alpha.txt', method=method, body=b'12345')
    assert response.status == 200
    assert is_app(response)
    assert response.body == f'app:{method} /static/alpha.txt body=5'.encode()


@pytest.mark.parametrize('target', ['/', '/other', '/staticfile', '/static.txt', '/STATIC/alpha.txt'])
def test_paths_outside_the_routes_reach_the_app(server, target):
    response = fetch(server.port, target)
    assert is_app(response), target
    assert response.body.startswith(f'app:GET {target} '.encode())


@pytest.mark.parametrize('interface', ['rsgi', 'asgi', 'wsgi'])
def test_static_files_with_each_interface(start_server, tree, interface):
    srv = start_server(APPS[interface], '--static-path-mount', str(tree), interface=interface)
    static = fetch(srv.port, '/static/alpha.txt')
    assert static.status == 200
    assert static.body == ALPHA
    assert static.header('x-from') is None
    assert fetch(srv.port, '/static/big.bin', headers=[('range', 'bytes=10-19')]).body == BIG[10:20]
    assert fetch(srv.port, '/static/missing.txt').status == 404
    assert fetch(srv.port, '/static/../secret.txt').status == 404
    app = fetch(srv.port, '/elsewhere')
    assert is_app(app)
    assert app.body == b'app:GET /elsewhere body=0'
    posted = fetch(srv.port, '/static/alpha.txt', method='POST', body=b'payload')
    assert posted.body == b'app:POST /static/alpha.txt body=7'


# -- mounts --------------------------------------------------------------------------------------


def test_multiple_mounts(start_server, tmp_path):
    first, second, nested = tmp_path / 'first', tmp_path / 'second', tmp_path / 'nested'
    for directory in (first, second, nested):
        directory.mkdir()
        (directory / 'which.txt').write_text(directory.name)
    (first / 'only-first.txt').write_text('only in first')
    (second / 'only-second.txt').write_text('only in second')
    srv = start_server(
        RSGI_APP,
        # The nested route comes first on purpose: the longest route wins, whatever the order.
        *('--static-path-route', '/assets/deep', '--static-path-mount', str(nested)),
        *('--static-path-route', '/assets', '--static-path-mount', str(first)),
        *('--static-path-route', '/media/', '--static-path-mount', str(second)),
    )
    assert fetch(srv.port, '/assets/which.txt').body == b'first'
    assert fetch(srv.port, '/assets/only-first.txt').body == b'only in first'
    assert fetch(srv.port, '/media/which.txt').body == b'second'
    assert fetch(srv.port, '/media/only-second.txt').body == b'only in second'
    assert fetch(srv.port, '/assets/deep/which.txt').body == b'nested'
    # Each route sees its own directory only.
    assert fetch(srv.port, '/assets/only-second.txt').status == 404
    assert fetch(srv.port, '/media/only-first.txt').status == 404
    assert fetch(srv.port, '/media/../first/only-first.txt').status == 404
    # The default route is not there when routes are given.
    assert is_app(fetch(srv.port, '/static/which.txt'))
    assert is_app(fetch(srv.port, '/assetsx/which.txt'))


def test_mount_at_the_root_route(start_server, tree):
    srv = start_server(RSGI_APP, '--static-path-route', '/', '--static-path-mount', str(tree))
    response = fetch(srv.port, '/alpha.txt')
    assert response.status == 200
    assert response.body == ALPHA


def test_mismatched_routes_and_mounts_are_refused(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    first.mkdir()
    second.mkdir()
    cases = [
        (['--static-path-route', '/a', '--static-path-mount', str(first), '--static-path-mount', str(second)], 'route'),
        (['--static-path-route', '/a'], 'static_path_mount'),
        (['--static-path-mount', str(tmp_path / 'missing')], 'static-path-mount'),
    ]
    for args, needle in cases:
        cmd = granian_cmd('--interface', 'rsgi', '--port', str(free_port()), *args, RSGI_APP)
        result = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)
        assert 'Traceback' not in result.stderr


# -- a large file --------------------------------------------------------------------------------


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    raise AssertionError('no VmHWM')


def test_large_file_streams_with_bounded_memory(start_server, tmp_path):
    size = 300 * 1024 * 1024
    mount = tmp_path / 'large'
    mount.mkdir()
    path = mount / 'huge.bin'
    markers = {0: b'BEGIN', 123_456_789: b'MIDDLE', size - 3: b'END'}
    with open(path, 'wb') as f:
        f.truncate(size)  # sparse: the disk holds almost nothing
        for offset, marker in markers.items():
            f.seek(offset)
            f.write(marker)
    expected = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 20):
            expected.update(chunk)

    srv = start_server(RSGI_APP, '--static-path-mount', str(mount), workers=1)
    pid = int(fetch(srv.port, '/pid').body)
    assert pid != srv.proc.pid
    assert fetch(srv.port, '/static/huge.bin', headers=[('range', 'bytes=-3')]).body == b'END'
    before = vm_hwm_kib(pid)

    digest = hashlib.sha256()
    received = 0
    paused = False
    with httpx.stream('GET', f'http://{HOST}:{srv.port}/static/huge.bin', timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert int(response.headers['content-length']) == size
        for chunk in response.iter_raw(64 * 1024):
            digest.update(chunk)
            received += len(chunk)
            if not paused:
                # A slow reader: the server must wait for the socket, not read ahead into memory.
                paused = True
                time.sleep(0.5)
                during = vm_hwm_kib(pid)
    after = vm_hwm_kib(pid)
    assert received == size
    assert digest.hexdigest() == expected.hexdigest()
    limit = 64 * 1024  # KiB: a fifth of the file
    assert during - before < limit, f'VmHWM {before} -> {during} KiB while the client paused'
    assert after - before < limit, f'VmHWM {before} -> {after} KiB for a {size >> 20} MiB file'
    assert after < size // 1024 // 2, f'VmHWM {after} KiB'
