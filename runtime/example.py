"""The example a new user serves first: iris, a scikit-learn LogisticRegression.

`python -m knserve.runtime.example [--port P] [--data-dir DIR]` trains the model once (on
scikit-learn's bundled iris data, no download), caches it, serves it as model `iris` on
127.0.0.1 and prints the curl commands that call it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def example_model_dir(data_dir: Path | None = None) -> Path:
    """The iris model's folder, trained and saved on first use."""
    base = data_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "knserve"
    folder = base / "examples" / "sklearn-iris"
    model_file = folder / "model.joblib"
    if not model_file.exists():
        import joblib
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        x, y = load_iris(return_X_y=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.joblib.tmp"
        joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), tmp)
        tmp.rename(model_file)
    return folder


def curl_lines(base_url: str, model: str = "iris", host_header: str | None = None) -> str:
    host = f" -H 'Host: {host_header}'" if host_header else ""
    return (
        f"curl -s{host} {base_url}/v1/models/{model}:predict "
        "-d '{\"instances\": [[6.8, 2.8, 4.8, 1.4]]}'\n"
        f"curl -s{host} {base_url}/v2/models/{model}/infer "
        '-d \'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", '
        '"data": [6.8, 2.8, 4.8, 1.4]}]}\''
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m knserve.runtime.example")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    p.add_argument("--data-dir", type=Path)
    args = p.parse_args()
    folder = example_model_dir(args.data_dir)
    from knserve.runtime.server import run
    from knserve.runtime.settings import ModelSpec, settings_from_env

    base = f"http://127.0.0.1:{args.port}"
    print(f"Serving the iris example ({folder}) at {base}. Call it with:\n")
    print(curl_lines(base) + "\n", flush=True)
    run(
        settings_from_env(
            port=args.port, models=(ModelSpec("iris", str(folder), "sklearn"),), log_level="warning"
        )
    )


if __name__ == "__main__":
    main()
