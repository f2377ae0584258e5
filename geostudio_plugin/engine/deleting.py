"""``delete``: remove one item from the workspace, all at once (renamed away first, then removed)."""

from __future__ import annotations

import os
import shutil
from typing import Any, Literal

from pydantic import Field

from .protocol import SpecError
from .specs import StudioModel
from .workspace import HOST, Workspace


class DeleteSpec(StudioModel):
    kind: Literal["datasets", "tunes", "inferences", "fetched"]
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")  # never "." or ".."


def run(spec: DeleteSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = workspace.find(spec.kind, spec.id)
    if folder is None or folder.resolve().parent != workspace.dir(spec.kind).resolve():
        raise SpecError("not_found", f"There is no {spec.kind[:-1]} '{spec.id}' in {workspace.root}.",
                        "Refresh the list; it may have been deleted already.")
    doomed = workspace.tmp / f"deleted-{spec.id}-{HOST}-pid{os.getpid()}-x"
    os.replace(folder, doomed)  # the item disappears from the workspace in one step
    shutil.rmtree(doomed, ignore_errors=True)
    return {"deleted": str(folder)}, {"kind": spec.kind, "id": spec.id}
