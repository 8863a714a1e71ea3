import asyncio

try:  # CloudEvents SDK 2.x
    from cloudevents.v1.http import CloudEvent
except ImportError:  # 1.x (e.g. beside kserve, which pins cloudevents<2)
    from cloudevents.http import CloudEvent

from function import new


def test_echoes_the_event_data():
    function = new()
    function.start({})
    event = CloudEvent({"type": "demo.request", "source": "tests"}, {"n": 1})
    answer = asyncio.run(function.handle(event))
    assert answer["type"] == "knserve.sample.echo"
    assert answer.data == {"received": "demo.request", "echo": {"n": 1}}
