"""`granian.asgi.LifespanProtocol` used directly, as code written for granian can, with small ASGI apps."""

import asyncio
import logging

import pytest
from granian.asgi import Lifespan, LifespanProtocol
from granian.errors import FatalError


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def logged():
    # On granian's logger itself: a logging config applied earlier may have stopped propagation.
    handler = Records()
    log = logging.getLogger('_granian')
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


class LifespanApp:
    """Answers startup and shutdown as told, recording what it received."""

    def __init__(self, startup='complete', shutdown='complete', message=''):
        self.answers = {'startup': startup, 'shutdown': shutdown}
        self.message = message
        self.received = []
        self.scope = None
        self.state_at_shutdown = None

    async def __call__(self, scope, receive, send):
        self.scope = scope
        while True:
            event = await receive()
            self.received.append(event['type'])
            phase = event['type'].split('.')[1]
            if phase == 'startup':
                scope['state']['pool'] = 'connected'
            else:
                self.state_at_shutdown = dict(scope['state'])
            answer = self.answers[phase]
            if answer == 'raise':
                raise RuntimeError(f'{phase} exploded')
            message = {'type': f'lifespan.{phase}.{answer}'}
            if answer == 'failed' and self.message:
                message['message'] = self.message
            await send(message)
            if phase == 'shutdown' or answer == 'failed':
                return


def test_error_transition_is_the_class_message():
    assert LifespanProtocol.error_transition == 'Invalid lifespan state transition'


def test_startup_and_shutdown_complete(logged):
    app = LifespanApp()
    protocol = LifespanProtocol(app)

    async def main():
        await protocol.startup()
        assert protocol.state == {'pool': 'connected'}
        assert not protocol.interrupt
        await protocol.shutdown()

    asyncio.run(main())
    assert app.received == ['lifespan.startup', 'lifespan.shutdown']
    assert app.scope['type'] == 'lifespan'
    assert app.scope['asgi'] == {'version': '3.0', 'spec_version': '2.3'}
    assert app.scope['state'] is protocol.state
    # The app still finds its state while shutting down; it is released afterwards.
    assert app.state_at_shutdown == {'pool': 'connected'}
    assert protocol.state == {}
    assert not (protocol.interrupt or protocol.errored or protocol.unsupported)
    assert protocol.exc is None
    assert not logged.records


def test_startup_failed_interrupts_and_logs_the_message(logged):
    protocol = LifespanProtocol(LifespanApp(startup='failed', message='no database'))

    async def main():
        await protocol.startup()

    asyncio.run(main())
    assert protocol.interrupt and protocol.failure_startup
    assert not protocol.unsupported
    assert protocol.failure_message == 'no database'
    assert logged.at(logging.ERROR) == ['no database']


def test_startup_failed_without_message_logs_nothing(logged):
    protocol = LifespanProtocol(LifespanApp(startup='failed'))
    asyncio.run(protocol.startup())
    assert protocol.interrupt
    assert not logged.records


def test_shutdown_failed_interrupts_and_logs_the_message(logged):
    protocol = LifespanProtocol(LifespanApp(shutdown='failed', message='could not flush'))

    async def main():
        await protocol.startup()
        assert not protocol.interrupt
        await protocol.shutdown()

    asyncio.run(main())
    assert protocol.interrupt and protocol.failure_shutdown
    assert logged.at(logging.ERROR) == ['could not flush']


def test_app_raising_on_the_scope_is_unsupported_with_one_warning(logged):
    async def http_only(scope, receive, send):
        raise ValueError(f'unsupported scope type {scope["type"]}')

    protocol = LifespanProtocol(http_only)

    async def main():
        await protocol.startup()
        await protocol.shutdown()

    asyncio.run(main())
    assert protocol.unsupported and protocol.errored
    assert not protocol.interrupt
    assert isinstance(protocol.exc, ValueError)
    warnings = logged.at(logging.WARNING)
    assert len(warnings) == 1
    assert 'continuing without Lifespan support' in warnings[0]
    assert '"asginl"' in warnings[0]


def test_app_raising_after_a_failure_interrupts():
    async def app(scope, receive, send):
        await receive()
        await send({'type': 'lifespan.startup.failed', 'message': 'broken'})
        raise RuntimeError('and then raised')

    protocol = LifespanProtocol(app)
    asyncio.run(protocol.startup())
    assert protocol.interrupt and protocol.errored
    assert not protocol.unsupported
    assert isinstance(protocol.exc, RuntimeError)


def test_app_returning_without_answering_does_not_hang():
    async def ignores_lifespan(scope, receive, send):
        return None

    protocol = LifespanProtocol(ignores_lifespan)

    async def main():
        await asyncio.wait_for(protocol.startup(), 5)
        await asyncio.wait_for(protocol.shutdown(), 5)

    asyncio.run(main())
    assert not (protocol.interrupt or protocol.errored or protocol.unsupported)


def test_shutdown_without_startup_returns():
    protocol = LifespanProtocol(LifespanApp())
    asyncio.run(asyncio.wait_for(protocol.shutdown(), 5))
    assert not protocol.interrupt


@pytest.mark.parametrize(
    'messages',
    [
        # startup answered twice
        ['lifespan.startup.complete', 'lifespan.startup.complete'],
        # a shutdown answer before startup was answered
        ['lifespan.shutdown.complete'],
        # startup answered after shutdown
        ['lifespan.startup.complete', 'lifespan.shutdown.complete', 'lifespan.startup.failed'],
    ],
)
def test_out_of_order_messages_raise_the_transition_error(messages):
    async def main():
        protocol = LifespanProtocol(LifespanApp())
        for kind in messages[:-1]:
            await protocol.send({'type': kind})
        with pytest.raises(AssertionError, match=LifespanProtocol.error_transition):
            await protocol.send({'type': messages[-1]})

    asyncio.run(main())


def test_unknown_message_type_raises():
    async def main():
        protocol = LifespanProtocol(LifespanApp())
        with pytest.raises(KeyError):
            await protocol.send({'type': 'lifespan.startup.done'})

    asyncio.run(main())


def test_receive_gives_the_queued_events_in_order():
    async def main():
        protocol = LifespanProtocol(LifespanApp())
        await protocol.event_queue.put({'type': 'lifespan.startup'})
        await protocol.event_queue.put({'type': 'lifespan.shutdown'})
        return [await protocol.receive(), await protocol.receive()]

    assert asyncio.run(main()) == [{'type': 'lifespan.startup'}, {'type': 'lifespan.shutdown'}]


def test_handle_runs_the_app_to_its_end():
    app = LifespanApp()
    protocol = LifespanProtocol(app)

    async def main():
        await protocol.event_queue.put({'type': 'lifespan.startup'})
        await protocol.event_queue.put({'type': 'lifespan.shutdown'})
        await asyncio.wait_for(protocol.handle(), 5)

    asyncio.run(main())
    assert app.received == ['lifespan.startup', 'lifespan.shutdown']
    assert protocol.event_startup.is_set() and protocol.event_shutdown.is_set()


def test_server_lifespan_makes_a_failed_startup_fatal():
    lifespan = Lifespan(LifespanApp(startup='failed', message='no database'))
    with pytest.raises(FatalError, match='no database'):
        asyncio.run(lifespan.startup())


def test_server_lifespan_serves_without_an_unsupported_one():
    async def http_only(scope, receive, send):
        raise ValueError('http only')

    lifespan = Lifespan(http_only)

    async def main():
        await lifespan.startup()
        await lifespan.shutdown()

    asyncio.run(main())
    assert not lifespan.supported
