"""{{name}}: an HTTP function in Knative func's Python shape.

`new()` returns the function object; the host calls `start(cfg)` once with the environment,
`handle(scope, receive, send)` for every request (plain ASGI), `alive()`/`ready()` for the probes
at /health/liveness and /health/readiness, and `stop()` on shutdown.
"""

import json


def new():
    return Function()


class Function:
    def __init__(self):
        self.greeting = "Hello"

    def start(self, cfg):
        self.greeting = cfg.get("GREETING", self.greeting)

    def stop(self):
        pass

    def alive(self):
        return True, "alive"

    def ready(self):
        return True, "ready"

    async def handle(self, scope, receive, send):
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        name = "world"
        if body:
            try:
                name = json.loads(body).get("name", name)
            except (ValueError, AttributeError):
                await respond(send, 400, {"error": 'send JSON like {"name": "Ada"}'})
                return
        await respond(send, 200, {"message": f"{self.greeting}, {name}!"})


async def respond(send, status, payload):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
