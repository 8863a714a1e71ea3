import asyncio
import json

from function import new


def call(function, body):
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(function.handle(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_greets_by_name():
    function = new()
    function.start({"GREETING": "Hi"})
    assert call(function, b'{"name": "Ada"}') == (200, {"message": "Hi, Ada!"})


def test_default_name_and_bad_json():
    function = new()
    function.start({})
    assert call(function, b"") == (200, {"message": "Hello, world!"})
    assert call(function, b"not json")[0] == 400
    assert function.alive()[0] and function.ready()[0]
