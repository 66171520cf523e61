"""The types `granian.rsgi` publishes for apps: what they are, and how they relate to the native objects."""

import pytest
from granian import _granian
from granian.rsgi import Scope, WebsocketMessage, WebsocketMessageType, WebsocketProtocol


def test_websocket_protocol_is_the_native_class():
    assert WebsocketProtocol is _granian.RSGIWebsocketProtocol


def test_message_type_is_an_int_enum_that_prints_its_name():
    assert [(m.name, m.value) for m in WebsocketMessageType] == [('close', 0), ('bytes', 1), ('string', 2)]
    assert WebsocketMessageType.bytes == 1
    assert WebsocketMessageType(2) is WebsocketMessageType.string
    assert isinstance(WebsocketMessageType.close, int)
    assert str(WebsocketMessageType.close) == 'WebsocketMessageType.close'
    assert f'{WebsocketMessageType.bytes}' == format(WebsocketMessageType.bytes, '') == str(WebsocketMessageType.bytes)


def test_native_scope_and_message_are_instances():
    assert issubclass(_granian.RSGIScope, Scope)
    assert issubclass(_granian.RSGIWebsocketMessage, WebsocketMessage)
    assert not issubclass(_granian.RSGIHeaders, Scope)


def test_scope_describes_the_native_attributes():
    native = {name for name in vars(_granian.RSGIScope) if not name.startswith('_')}
    assert set(Scope.__annotations__) | {'headers'} == native
    assert isinstance(Scope.__dict__['headers'], property)


def test_scope_and_message_can_be_built_and_subclassed_for_tests():
    class FakeScope(Scope):
        proto = 'http'
        path = '/'

        @property
        def headers(self):
            return {'host': 'example.org'}

    scope = FakeScope()
    assert isinstance(scope, Scope)
    assert (scope.proto, scope.headers['host']) == ('http', 'example.org')
    with pytest.raises(AttributeError, match='headers'):
        Scope().headers  # noqa: B018

    message = WebsocketMessage()
    message.kind, message.data = WebsocketMessageType.string, 'hi'
    assert isinstance(message, WebsocketMessage)
    assert message.kind == 2
