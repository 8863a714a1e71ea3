"""The CloudEvents SDK's HTTP binding, from whichever major version is installed.

CloudEvents SDK 2.x moved its 1.x modules under `cloudevents.v1` (`cloudevents.http` became
`cloudevents.v1.http`, and so on); KServe 0.21 pins `cloudevents<2`. knserve takes either, so
it installs into the same environment as kserve: every knserve module imports the SDK's names
from here, never from `cloudevents` directly. The names and their signatures are the same in
both majors (`from_http(headers, body, data_unmarshaller=…)`, `to_binary(event,
data_marshaller=…)`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:  # CloudEvents SDK 2.x
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.exceptions import GenericException
    from cloudevents.v1.http import CloudEvent, from_http
except ImportError:  # 1.x (beside kserve, which pins cloudevents<2)
    from cloudevents.conversion import (  # type: ignore[no-redef, unused-ignore]
        to_binary,
        to_structured,
    )
    from cloudevents.exceptions import GenericException  # type: ignore[no-redef, unused-ignore]
    from cloudevents.http import CloudEvent, from_http  # type: ignore[no-redef, unused-ignore]

try:
    SDK_VERSION = version("cloudevents")
except PackageNotFoundError:  # imported from a source tree on sys.path
    SDK_VERSION = "unknown"

__all__ = [
    "SDK_VERSION",
    "CloudEvent",
    "GenericException",
    "from_http",
    "to_binary",
    "to_structured",
]
