"""{{name}}: a CloudEvents function.

The host decodes every request into a CloudEvent (binary or structured mode; a request that is
not a CloudEvent gets 400) and calls `handle(event)`. Returning a CloudEvent answers with it —
in structured mode, or binary when `response_mode = "binary"`; returning None answers 204.
"""

try:  # CloudEvents SDK 2.x
    from cloudevents.v1.http import CloudEvent
except ImportError:  # 1.x (e.g. beside kserve, which pins cloudevents<2)
    from cloudevents.http import CloudEvent


def new():
    return Function()


class Function:
    response_mode = "structured"

    def start(self, cfg):
        self.response_mode = cfg.get("RESPONSE_MODE", self.response_mode)

    def alive(self):
        return True, "alive"

    def ready(self):
        return True, "ready"

    async def handle(self, event):
        data = event.data if isinstance(event.data, dict) else {"data": event.data}
        attributes = {"type": "knserve.sample.echo", "source": "functions/{{name}}"}
        return CloudEvent(attributes, {"received": event["type"], "echo": data})
