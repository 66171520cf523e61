"""`granian.net`: socket specs that bind real listeners, and holders of their descriptors."""

import multiprocessing
import os
import pickle
import socket
import stat

import pytest
from granian.net import SocketHolder, SocketSpec, UnixSocketSpec

TIMEOUT = 10


@pytest.fixture
def holders():
    """Descriptors of the holders a test built, closed at its end (a holder never closes its own)."""
    built = []
    yield built
    for holder in built:
        os.close(holder.get_fd())


def adopt(holder: SocketHolder) -> socket.socket:
    return socket.socket(fileno=os.dup(holder.get_fd()))


def serve_one(holder: SocketHolder, reply: bytes) -> None:
    """In another process: accept one connection on the holder's socket and answer it."""
    with adopt(holder) as listener:
        listener.settimeout(TIMEOUT)
        conn, _ = listener.accept()
        with conn:
            conn.sendall(reply + b' from fd %d' % holder.get_fd())
    os.close(holder.get_fd())


def test_tcp_spec_builds_a_listening_socket(holders):
    spec = SocketSpec('127.0.0.1', 0, 32)
    assert not spec.is_uds()
    holder = spec.build()
    holders.append(holder)
    assert isinstance(holder.get_fd(), int)
    assert not holder.is_uds()
    assert holder.backlog == 32
    with adopt(holder) as listener:
        assert listener.family == socket.AF_INET
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        address = listener.getsockname()
        assert address[0] == '127.0.0.1' and address[1] > 0
        with socket.create_connection(address, timeout=TIMEOUT) as client:
            conn, _ = listener.accept()
            with conn:
                client.sendall(b'ping')
                assert conn.recv(4) == b'ping'


def test_ipv6_any_listens_on_both_families(holders):
    if not socket.has_ipv6:
        pytest.skip('no IPv6')
    try:
        holder = SocketSpec('::', 0, 8).build()
    except OSError as exc:
        pytest.skip(f'IPv6 unavailable: {exc}')
    holders.append(holder)
    with adopt(holder) as listener:
        assert listener.family == socket.AF_INET6
        with socket.create_connection(('127.0.0.1', listener.getsockname()[1]), timeout=TIMEOUT):
            listener.accept()[0].close()


def test_building_a_taken_address_fails(holders):
    holder = SocketSpec('127.0.0.1', 0, 8).build()
    holders.append(holder)
    with adopt(holder) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(OSError, match=str(port)):
        SocketSpec('127.0.0.1', port, 8).build()


def test_unix_spec_builds_a_listening_socket_with_permissions(holders, tmp_path):
    path = tmp_path / 'app.sock'
    spec = UnixSocketSpec(str(path), 16, 0o660)
    assert spec.is_uds()
    holder = spec.build()
    holders.append(holder)
    assert holder.is_uds()
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    with adopt(holder) as listener, socket.socket(socket.AF_UNIX) as client:
        assert listener.getsockname() == str(path)
        client.settimeout(TIMEOUT)
        client.connect(str(path))
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b'pong')
            assert client.recv(4) == b'pong'


def test_unix_spec_replaces_a_stale_socket_only(holders, tmp_path):
    path = tmp_path / 'app.sock'
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    holders.append(UnixSocketSpec(str(path), 4, None).build())
    # Now a server listens there: another bind must not take its path.
    with pytest.raises(OSError, match='in use'):
        UnixSocketSpec(str(path), 4, None).build()
    regular = tmp_path / 'file'
    regular.write_text('data')
    with pytest.raises(OSError, match='not a socket'):
        UnixSocketSpec(str(regular), 4, None).build()
    assert regular.read_text() == 'data'


@pytest.mark.parametrize(
    ('args', 'error'),
    [
        ((8000, 80, 1), TypeError),
        (('127.0.0.1', 65536, 1), OverflowError),
        (('127.0.0.1', -1, 1), OverflowError),
        (('127.0.0.1', '80', 1), TypeError),
        (('127.0.0.1', 80, 2**31), OverflowError),
    ],
)
def test_spec_arguments_are_checked(args, error):
    with pytest.raises(error):
        SocketSpec(*args)


def test_specs_take_keywords_and_pickle():
    spec = SocketSpec(host='::1', port=8000, backlog=64)
    assert pickle.loads(pickle.dumps(spec)).__getstate__() == ('::1', 8000, 64)
    uds = UnixSocketSpec(bind='/run/app.sock', backlog=8, permissions=0o600)
    assert pickle.loads(pickle.dumps(uds)).__getstate__() == ('/run/app.sock', 8, 0o600)


def test_holder_pickles_as_its_descriptor(holders):
    holder = SocketSpec('127.0.0.1', 0, 8).build()
    holders.append(holder)
    copy = pickle.loads(pickle.dumps(holder))
    assert isinstance(copy, SocketHolder)
    assert (copy.get_fd(), copy.is_uds(), copy.backlog) == (holder.get_fd(), False, 8)
    assert SocketHolder(fd=holder.get_fd(), uds=True, backlog=3).__getstate__() == (holder.get_fd(), True, 3)


@pytest.mark.parametrize('method', ['spawn', 'fork'])
def test_holder_crosses_to_another_process(holders, method):
    """A new interpreter (spawn) gets its own descriptor of the listener; a fork inherits it."""
    holder = SocketSpec('127.0.0.1', 0, 8).build()
    holders.append(holder)
    with adopt(holder) as listener:
        address = listener.getsockname()
    child = multiprocessing.get_context(method).Process(target=serve_one, args=(holder, b'hello'))
    child.start()
    try:
        with socket.create_connection(address, timeout=TIMEOUT) as client:
            client.settimeout(TIMEOUT)
            reply = b''
            while chunk := client.recv(100):
                reply += chunk
        assert reply.startswith(b'hello from fd ')
    finally:
        child.join(TIMEOUT)
        if child.exitcode is None:
            child.kill()
    assert child.exitcode == 0
