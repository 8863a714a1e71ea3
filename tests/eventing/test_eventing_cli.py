"""`knserve broker|trigger|event` against the real control API and the real broker ingress.

Both are served by uvicorn on loopback ports from a thread; the commands run through the root
CLI with click's CliRunner, and the tests look at what landed in the store and the event log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from net_fixtures import serve_in_thread

from knserve.eventing.eventlog import EventLog
from knserve.eventing.ingress import Ingress
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store
from knserve.knative.cli import root

BROKERS, TRIGGERS = by_name("brokers"), by_name("triggers")


class Plane:
    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(tmp_path / "state.db")
        self.log = EventLog(tmp_path / "events.db")
        self.log.add_trigger("spy", "default", "default")
        ingress = Ingress(self.log, lambda ns, name: self.store.find(BROKERS, ns, name) is not None)
        self._servers = ExitStack()
        self.api = self._servers.enter_context(serve_in_thread(create_app(self.store)))
        self.ingress = self._servers.enter_context(serve_in_thread(ingress))

    def close(self) -> None:
        self._servers.close()
        self.log.close()
        self.store.close()

    def ready_broker(self, name: str = "default") -> None:
        """Create a broker and play the eventing controller: its address is the ingress."""
        broker = self.store.create(
            BROKERS, {"metadata": {"name": name, "namespace": "default"}, "spec": {}}
        )
        url = f"{self.ingress}/default/{name}"
        broker["status"] = {
            "address": {"url": url},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        self.store.replace(BROKERS, broker, subresource="status")

    def stored(self) -> list[dict[str, Any]]:
        return [{**e.attributes, "data": e.data} for e in self.log.pending("spy", 100)]


@pytest.fixture
def plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plane]:
    p = Plane(tmp_path)
    monkeypatch.setenv("KNSERVE_API", p.api)
    monkeypatch.delenv("KNSERVE_GATEWAY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # no running plane's record
    yield p
    p.close()


def knserve(*args: str) -> Any:
    return CliRunner().invoke(root, list(args))


# ---- broker ------------------------------------------------------------------------------------


def test_broker_create_with_delivery_flags_builds_the_knative_object(plane: Plane) -> None:
    result = knserve(
        "broker",
        "create",
        "orders",
        "--class",
        "MTChannelBasedBroker",
        "--retry",
        "3",
        "--backoff-policy",
        "linear",
        "--backoff-delay",
        "PT0.5S",
        "--dl-sink",
        "ksvc:dlq",
    )
    assert result.exit_code == 0, result.output
    assert result.output == "Broker 'orders' successfully created in namespace 'default'.\n"
    broker = plane.store.get(BROKERS, "default", "orders")
    assert broker["metadata"]["annotations"] == {
        "eventing.knative.dev/broker.class": "MTChannelBasedBroker"
    }
    assert broker["spec"] == {
        "delivery": {
            "retry": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "deadLetterSink": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "dlq"}
            },
        }
    }


def test_broker_create_refuses_a_delivery_that_is_not_iso_8601(plane: Plane) -> None:
    result = knserve("broker", "create", "orders", "--backoff-delay", "5s")
    assert result.exit_code == 1
    assert (
        'spec.delivery.backoffDelay "5s" is not an ISO 8601 duration; write PT5S' in result.output
    )
    assert plane.store.find(BROKERS, "default", "orders") is None


def test_broker_list_describe_and_delete(plane: Plane) -> None:
    plane.ready_broker()
    listed = knserve("broker", "list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["NAME", "URL", "AGE", "CONDITIONS", "READY", "REASON"]
    assert row.split()[:2] == ["default", f"{plane.ingress}/default/default"]
    described = knserve("broker", "describe", "default")
    assert f"URL:    {plane.ingress}/default/default" in described.output
    assert "++ Ready" in described.output
    deleted = knserve("broker", "delete", "default")
    assert deleted.output == "Broker 'default' successfully deleted in namespace 'default'.\n"
    assert knserve("broker", "list").output == "No brokers found in namespace 'default'.\n"


# ---- trigger -----------------------------------------------------------------------------------


def test_trigger_create_builds_subscriber_filters_and_delivery(plane: Plane) -> None:
    result = knserve(
        "trigger",
        "create",
        "predict",
        "--broker",
        "orders",
        "--sink",
        "ksvc:iris",
        "--filter",
        "type=io.kserve.inference.request",
        "--filter",
        "source=/shop",
        "--dl-sink",
        "http://127.0.0.1:9/dead",
        "--retry",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert result.output == "Trigger 'predict' successfully created in namespace 'default'.\n"
    assert plane.store.get(TRIGGERS, "default", "predict")["spec"] == {
        "broker": "orders",
        "subscriber": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "iris"}
        },
        "filter": {"attributes": {"type": "io.kserve.inference.request", "source": "/shop"}},
        "delivery": {"deadLetterSink": {"uri": "http://127.0.0.1:9/dead"}, "retry": 2},
    }


@pytest.mark.parametrize(
    ("sink", "subscriber"),
    [
        pytest.param(
            "iris",
            {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "iris"}},
            id="bare-name",
        ),
        pytest.param(
            "ksvc:iris:prod",
            {
                "ref": {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "name": "iris",
                    "namespace": "prod",
                }
            },
            id="ksvc-namespace",
        ),
        pytest.param(
            "broker:replies",
            {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "replies"}},
            id="broker",
        ),
        pytest.param(
            "isvc:iris",
            {
                "ref": {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceService",
                    "name": "iris",
                }
            },
            id="isvc",
        ),
        pytest.param("https://example.com/hook", {"uri": "https://example.com/hook"}, id="url"),
    ],
)
def test_trigger_sinks_follow_kns_syntax(
    plane: Plane, sink: str, subscriber: dict[str, Any]
) -> None:
    assert knserve("trigger", "create", "t", "--sink", sink).exit_code == 0
    trigger = plane.store.get(TRIGGERS, "default", "t")
    assert trigger["spec"] == {"broker": "default", "subscriber": subscriber}


def test_trigger_create_refuses_an_unknown_sink_kind(plane: Plane) -> None:
    result = knserve("trigger", "create", "t", "--sink", "deployment:web")
    assert result.exit_code == 2
    assert (
        "'deployment:web' is not a sink; write ksvc:NAME, broker:NAME, isvc:NAME" in result.output
    )


def test_trigger_update_changes_filters_and_sink_but_not_the_broker(plane: Plane) -> None:
    knserve(
        "trigger", "create", "t", "--sink", "ksvc:a", "--filter", "type=x", "--filter", "source=y"
    )
    result = knserve(
        "trigger", "update", "t", "--filter", "type-", "--filter", "subject=z", "--sink", "ksvc:b"
    )
    assert result.exit_code == 0, result.output
    spec = plane.store.get(TRIGGERS, "default", "t")["spec"]
    assert spec["filter"] == {"attributes": {"source": "y", "subject": "z"}}
    assert spec["subscriber"]["ref"]["name"] == "b"
    moved = knserve("trigger", "update", "t", "--broker", "other")
    assert moved.exit_code == 2
    assert "a trigger's broker cannot change: delete it and create it again" in moved.output


def test_trigger_list_and_describe_show_the_sink_and_its_url(plane: Plane) -> None:
    knserve(
        "trigger",
        "create",
        "predict",
        "--sink",
        "ksvc:iris",
        "--filter",
        "type=req",
        "--retry",
        "1",
    )
    trigger = plane.store.get(TRIGGERS, "default", "predict")
    trigger["status"] = {
        "subscriberUri": "http://iris.default.localhost",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    plane.store.replace(TRIGGERS, trigger, subresource="status")
    listed = knserve("trigger", "list").output.splitlines()
    assert listed[0].split() == ["NAME", "BROKER", "SINK", "AGE", "CONDITIONS", "READY", "REASON"]
    assert listed[1].split()[:3] == ["predict", "default", "ksvc:iris"]
    described = knserve("trigger", "describe", "predict").output
    for line in (
        "Broker:     default",
        "  type      req",
        "  ksvc:iris",
        "  URI:      http://iris.default.localhost",
        "  Retry:         1",
    ):
        assert line in described
    assert knserve("trigger", "delete", "predict").exit_code == 0
    assert plane.store.find(TRIGGERS, "default", "predict") is None


# ---- event send ----------------------------------------------------------------------------------


def test_event_send_to_a_broker_stores_the_event(plane: Plane) -> None:
    plane.ready_broker()
    result = knserve(
        "event",
        "send",
        "--broker",
        "default",
        "--type",
        "order.created",
        "--source",
        "/cli",
        "--id",
        "e-1",
        "--data",
        '{"total": 3}',
        "--extension",
        "region=eu",
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"Event 'e-1' sent to {plane.ingress}/default/default (202).\n"
    [event] = plane.stored()
    assert {k: event[k] for k in ("id", "source", "type", "region", "datacontenttype", "data")} == {
        "id": "e-1",
        "source": "/cli",
        "type": "order.created",
        "region": "eu",
        "datacontenttype": "application/json",
        "data": b'{"total": 3}',
    }


def test_event_send_to_a_url_builds_data_from_fields(plane: Plane, tmp_path: Path) -> None:
    plane.ready_broker()
    result = knserve(
        "event",
        "send",
        "--to",
        f"{plane.ingress}/default/default",
        "-f",
        "person.name=Joe",
        "-f",
        "person.age=30",
        "--raw-field",
        "person.id=007",
    )
    assert result.exit_code == 0, result.output
    [event] = plane.stored()
    assert orjson.loads(event["data"]) == {"person": {"name": "Joe", "age": 30, "id": "007"}}
    assert event["type"] == "dev.knative.cli.plugin.event.generic"


def test_event_send_reads_data_from_a_file(plane: Plane, tmp_path: Path) -> None:
    plane.ready_broker()
    (tmp_path / "req.json").write_text('{"instances": [[1, 2]]}')
    result = knserve("event", "send", "--broker", "default", "--data", f"@{tmp_path / 'req.json'}")
    assert result.exit_code == 0, result.output
    assert plane.stored()[0]["data"] == b'{"instances": [[1, 2]]}'


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["--broker", "nope"], 1, 'brokers.eventing.knative.dev "nope" not found', id="no-broker"
        ),
        pytest.param([], 2, "give --broker NAME or --to DESTINATION", id="no-destination"),
        pytest.param(
            ["--broker", "default", "--data", "{oops"], 2, "is not valid JSON", id="bad-json"
        ),
        pytest.param(
            ["--broker", "default", "--extension", "Region=eu"],
            2,
            "lowercase letters and digits",
            id="bad-extension",
        ),
    ],
)
def test_event_send_errors_say_what_to_fix(
    plane: Plane, args: list[str], code: int, message: str
) -> None:
    plane.ready_broker()
    result = knserve("event", "send", *args)
    assert result.exit_code == code
    assert message in result.output
    assert plane.stored() == []


def test_event_send_reports_the_ingress_refusal(plane: Plane) -> None:
    plane.ready_broker()
    result = knserve("event", "send", "--to", f"{plane.ingress}/default/missing")
    assert result.exit_code == 1
    assert 'answered 404: broker "missing" not found in namespace "default"' in result.output
