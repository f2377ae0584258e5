"""``delete``: remove one item from the workspace, all at once (renamed away first, then removed).

An item in use (a dataset a tune trains on, a model an inference runs, an item being built) holds a
lock (``Workspace.lock``); delete refuses it, naming the job, and deletes nothing.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Literal

from pydantic import Field

from .protocol import EngineError, SpecError
from .specs import StudioModel
from .workspace import HOST, Workspace, describe_job

NOUN = {"datasets": "dataset", "tunes": "tuned model", "inferences": "inference run", "fetched": "fetch",
        "templates": "user template"}


class DeleteSpec(StudioModel):
    kind: Literal["datasets", "tunes", "inferences", "fetched", "templates"]
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # never "." or ".."


def in_use(workspace: Workspace, kind: str, item_id: str) -> None:
    """Raise ``in_use`` naming the job(s) holding the item, if any does."""
    users = workspace.holders(kind, item_id)
    if users:
        jobs = "; ".join(describe_job(u) for u in users)
        raise EngineError("in_use", f"The {NOUN[kind]} '{item_id}' is in use by {jobs}; nothing was deleted.",
                          "Wait for that job to finish (or cancel it), then delete again. A lock left by a job "
                          "that died is cleared by itself: at once on this machine, after 24 h from another one.")


def run(spec: DeleteSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = workspace.find(spec.kind, spec.id)
    if folder is None or folder.resolve().parent != workspace.dir(spec.kind).resolve():
        in_use(workspace, spec.kind, spec.id)  # being built: say by whom
        raise SpecError("not_found", f"There is no {NOUN[spec.kind]} '{spec.id}' in {workspace.root}.",
                        "Refresh the list; it may have been deleted already.")
    in_use(workspace, spec.kind, spec.id)
    doomed = workspace.tmp / f"deleted-{spec.id}-{HOST}-pid{os.getpid()}-x"
    os.replace(folder, doomed)  # the item disappears from the workspace in one step
    try:
        in_use(workspace, spec.kind, spec.id)  # a job that locked it in between keeps it
    except EngineError:
        os.replace(doomed, folder)
        raise
    shutil.rmtree(doomed, ignore_errors=True)
    return {"deleted": str(folder)}, {"kind": spec.kind, "id": spec.id}
