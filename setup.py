"""Map the repository's top-level folders onto the ``knserve`` import namespace.

DESIGN.md makes the top-level folders the packages (``runtime/`` is ``knserve.runtime``) so that
nothing generic like ``runtime`` lands at the top of site-packages. setuptools cannot discover
such a mapping from pyproject.toml alone, so this file walks the folders once at build time.
Editable installs work too: setuptools' editable finder honours ``package_dir``.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
FOLDERS = ["runtime", "functions", "eventing", "knative", "scaffolds"]


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder in FOLDERS:
        package_dir[f"knserve.{folder}"] = folder
        for init in sorted((HERE / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(HERE)
            if "templates" in rel.parts or "__pycache__" in rel.parts:
                continue
            packages.append("knserve." + ".".join(rel.parts))
    return packages, package_dir


packages, package_dir = _packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "knserve.scaffolds": ["templates/**/*", "templates/**/.*"],
        "knserve.knative": ["crds/*.yaml", "deploy/*", "monitoring/*.html"],
        "knserve.knative.supervisor": ["*.c"],
        "knserve.knative.kserve": ["stock_runtimes/*.yaml"],
        "knserve.eventing": ["crds/*.yaml"],
        "knserve.functions": ["*.json"],
    },
    include_package_data=True,
)
