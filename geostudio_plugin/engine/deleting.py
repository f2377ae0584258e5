"""``delete``: remove one item from the workspace, all at once (renamed away first, then removed)."""

from __future__ import annotations

import os
import shutil
from typing import Any, Literal

from pydantic import Field

from . import protocol
from .protocol import SpecError
from .specs import StudioModel, parse_spec
from .workspace import Workspace


class DeleteSpec(StudioModel):
    kind: Literal["datasets", "tunes", "inferences", "fetched"]
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")


def run(spec_data: Any, workspace: Workspace) -> None:
    spec = parse_spec(DeleteSpec, spec_data, "delete")
    folder = workspace.find(spec.kind, spec.id)
    if folder is None:
        raise SpecError("not_found", f"There is no {spec.kind[:-1]} '{spec.id}' in {workspace.root}.",
                        "Refresh the list; it may have been deleted already.")
    doomed = workspace.tmp / f"deleted-{spec.id}-pid{os.getpid()}-x"
    os.replace(folder, doomed)  # the item disappears from the workspace in one step
    shutil.rmtree(doomed, ignore_errors=True)
    protocol.result(outputs={"deleted": str(folder)}, summary={"kind": spec.kind, "id": spec.id})
