"""The templates `knserve func create` renders, from the folders of `knserve.scaffolds`.

A template is a folder under `scaffolds/templates/`; `{{name}}` in any text file becomes the
function's name. Rendering writes func.yaml (func's schema, with the template's `invoke` kind and
environment) and runs the template's setup script, if it has one, to make what the function needs
to answer at once (a trained model, background data).
"""

from __future__ import annotations

import runpy
import shutil
import sys
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from knserve.functions import funcyaml
from knserve.functions.errors import FunctionError


@dataclass(frozen=True)
class Template:
    name: str
    summary: str
    invoke: str = "http"
    envs: dict[str, str] = field(default_factory=dict)
    setup: str | None = None  # a script in the template that prepares data files
    needs: tuple[str, ...] = ()  # modules the setup script imports (checked first)


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "http", "an ASGI function in Knative func's shape, with liveness and readiness probes"
        ),
        Template(
            "cloudevents",
            "receives a decoded CloudEvent and may answer with one",
            invoke="cloudevent",
        ),
        Template(
            "predictor",
            "a custom model served with KServe V1, V2 and CloudEvents (trained iris example)",
            setup="train.py",
            needs=("sklearn", "joblib"),
        ),
        Template(
            "transformer",
            "pre- and post-processing around a predictor reached over HTTP (PREDICTOR_HOST)",
            envs={"PREDICTOR_HOST": "127.0.0.1:8080", "PREDICTOR_PROTOCOL": "v1"},
        ),
        Template(
            "explainer",
            "answers :explain with SHAP's KernelExplainer over a predictor's HTTP endpoint",
            envs={"PREDICTOR_HOST": "127.0.0.1:8080", "PREDICTOR_PROTOCOL": "v2"},
            setup="prepare.py",
            needs=("sklearn", "shap"),
        ),
        # KServe's `spec.explainer.alibi` (type AnchorTabular) as a function. alibi needs NumPy < 2,
        # which its own environment (`func build`) has; preparing it needs only scikit-learn.
        Template(
            "anchors-explainer",
            "answers :explain with Alibi's AnchorTabular over a predictor's HTTP "
            "endpoint, in its own environment (alibi, NumPy < 2)",
            envs={"PREDICTOR_HOST": "127.0.0.1:8080", "PREDICTOR_PROTOCOL": "v1"},
            setup="prepare.py",
            needs=("sklearn",),
        ),
    )
}
LANGUAGES = ("python",)


def template_root() -> Path:
    return Path(str(files("knserve.scaffolds"))) / "templates"


def listing() -> str:
    """One line per template, for `knserve func create --list`."""
    width = max(len(n) for n in TEMPLATES)
    return "\n".join(f"{t.name:<{width}}  {t.summary}" for t in TEMPLATES.values())


def get(name: str) -> Template:
    template = TEMPLATES.get(name)
    if template is None:
        raise FunctionError(
            f"unknown template {name!r}; the templates are: {', '.join(TEMPLATES)} "
            "(`knserve func create --list` describes them)"
        )
    return template


def render(template: Template, name: str, dest: Path) -> None:
    """Write the template into `dest` (which must not exist) with `name` filled in."""
    source = template_root() / template.name
    if not source.is_dir():
        raise FunctionError(f"template files for {template.name!r} are missing from {source}")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in dest.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".txt", ".yaml", ".cfg"):
            text = path.read_text()
            if "{{name}}" in text:
                path.write_text(text.replace("{{name}}", name))
    funcyaml.save(dest, funcyaml.new(name, template.invoke, template.envs))
    if template.setup:
        missing = [m for m in template.needs if _missing(m)]
        if missing:
            raise FunctionError(
                f"the {template.name} template needs {', '.join(missing)} to prepare its example: "
                "pip install 'knserve[sklearn,explain]'"
            )
        script = dest / template.setup
        argv = sys.argv
        try:
            sys.argv = [str(script)]
            runpy.run_path(str(script), run_name="__main__")
        except Exception as exc:
            raise FunctionError(
                f"{template.setup} of the {template.name} template failed: {exc}"
            ) from None
        finally:
            sys.argv = argv


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None
