import asyncio

from cloudevents.v1.http import CloudEvent

from function import new


def test_echoes_the_event_data():
    function = new()
    function.start({})
    event = CloudEvent({"type": "demo.request", "source": "tests"}, {"n": 1})
    answer = asyncio.run(function.handle(event))
    assert answer["type"] == "knserve.sample.echo"
    assert answer.data == {"received": "demo.request", "echo": {"n": 1}}
