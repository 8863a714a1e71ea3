"""`hf://org/model[:revision]` through huggingface_hub's `snapshot_download`, as KServe's storage
initializer fetches it: the repository's files at that revision (default: its main branch).

`HF_ENDPOINT` names the hub (a mirror, or a local server in the tests) and `HF_TOKEN` the token
for private and gated repositories; both as huggingface_hub reads them. The hub client's own
cache is a folder inside the fetch's staging folder, so nothing is kept twice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from knserve.runtime.storage.errors import fetch_error, import_client, one_line

TOKEN_FIX = "set HF_TOKEN to a token that may read it (and accept its terms on the hub if gated)"


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """(`org/model`, revision or None) from `hf://org/model[:revision]`, KServe's form."""
    parts = uri[len("hf://") :].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1].partition(":")[0]:
        raise fetch_error(
            uri,
            "the URI is not hf://ORG/MODEL[:REVISION]",
            "write the repository as ORG/MODEL, a revision after ':'",
        )
    model, _, revision = parts[1].partition(":")
    return f"{parts[0]}/{model}", revision or None


def fetch_hf(uri: str, folder: Path) -> None:
    """Download the repository snapshot `uri` names into `folder`."""
    repo_id, revision = parse_hf_uri(uri)
    hub = import_client("huggingface_hub", "hf", uri)
    from huggingface_hub import errors
    from huggingface_hub.utils import disable_progress_bars

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    hub_cache = folder.parent / "hub-cache"  # the staging folder's: removed with it
    disable_progress_bars()  # terminal bars are noise in a replica's log
    try:
        hub.snapshot_download(
            repo_id=repo_id,
            revision=revision,
            local_dir=folder,
            cache_dir=hub_cache,
            endpoint=endpoint,
        )
    except errors.GatedRepoError:
        raise fetch_error(uri, f"{repo_id} is gated", TOKEN_FIX) from None
    except errors.RevisionNotFoundError:
        raise fetch_error(
            uri,
            f"{repo_id} has no revision {revision!r} at {endpoint}",
            "check the revision after ':' in storageUri",
        ) from None
    except errors.RepositoryNotFoundError:
        raise fetch_error(
            uri,
            f"repository {repo_id} not found at {endpoint}, or it is private",
            f"check the name in storageUri, or {TOKEN_FIX}",
        ) from None
    except errors.LocalEntryNotFoundError as exc:  # the hub could not be reached
        raise fetch_error(
            uri,
            f"{endpoint} could not be reached ({one_line(exc)})",
            "check HF_ENDPOINT and the network",
        ) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise fetch_error(
            uri, f"{type(exc).__name__}: {exc}", "check HF_ENDPOINT and HF_TOKEN"
        ) from None
    # snapshot_download keeps its bookkeeping in local_dir/.cache; the model does not need it.
    shutil.rmtree(folder / ".cache", ignore_errors=True)
