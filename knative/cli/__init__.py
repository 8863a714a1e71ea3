"""The kn-style command line: ``knserve <noun> <verb>``.

The root group imports each command group only when it is used, so ``knserve func run`` does not
pay for the serving plane's imports and the other way round. A group lives in the module
``knserve.knative.cli.<module>`` and exposes a click command named ``cli``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

# command name -> (module under knserve.knative.cli, one-line help shown by `knserve --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("up", "Start the local serving plane in the foreground."),
    "service": ("service", "Knative Services: create, update, describe, list, delete."),
    "revision": ("revision", "Revisions: list, describe, delete."),
    "route": ("route", "Routes: list, describe."),
    "apply": ("apply", "Create or update every object of a YAML file."),
    "delete": ("apply", "Delete every object of a YAML file."),
    "func": ("func", "Functions: create, run, build, invoke, deploy, describe, list."),
    "broker": ("broker", "Brokers: create, list, describe, delete."),
    "trigger": ("trigger", "Triggers: create, update, list, describe, delete."),
    "event": ("event", "Send a CloudEvent to a broker or a URL."),
    "inferenceservice": ("isvc", "InferenceServices: create, list, describe, delete."),
    "isvc": ("isvc", "Alias of inferenceservice."),
    "inferencegraph": ("graph", "InferenceGraphs: list, describe, delete."),
    "graph": ("graph", "Alias of inferencegraph."),
    "ig": ("graph", "Alias of inferencegraph."),
    "export": ("export", "Print the Knative objects an InferenceService or graph becomes."),
    "logs": ("logs", "Print the logs of an InferenceService's, Service's or Revision's replicas."),
    "trainedmodel": ("trainedmodel", "TrainedModels: list, describe, delete."),
    "tm": ("trainedmodel", "Alias of trainedmodel."),
    "dashboard": ("dashboard", "Print (and open) the plane's dashboard URL."),
}


def _available(name: str) -> bool:
    module, _ = COMMANDS[name]
    return importlib.util.find_spec(f"knserve.knative.cli.{module}") is not None


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module = importlib.import_module(f"knserve.knative.cli.{COMMANDS[cmd_name][0]}")
        command: click.Command = module.cli if cmd_name != "delete" else module.delete_cli
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="knserve")
def root() -> None:
    """knserve: serverless ML inference, KServe's model on Knative's, with or without a cluster."""


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return root.main(args=argv if argv is not None else sys.argv[1:], prog_name="knserve")
