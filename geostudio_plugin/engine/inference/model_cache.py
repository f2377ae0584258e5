"""The model a streamed inference runs: TerraTorch's eager task, or its frozen TorchScript twin kept in the tune folder.

Why: on a CPU the frozen model is faster (batch norms folded into the convolutions) and, once written to disk, it
needs torch only. Importing TerraTorch (with Lightning, timm and their kin) and building the task takes about
600 MB of memory and seconds before the first pixel, more than half of a large run's peak. So the first CPU
inference that traces a tune's model writes the frozen module to ``<tune>/inference_cache/``; later inferences
load it and import TerraTorch only if a tile of another shape comes (the eager task is then built, once).

A cached file is named after the tile shape and a key: the checkpoint's size and modification time, a hash of
the deploy config, and the torch version, so a checkpoint or config changed by hand (or a new torch) is never
served a stale model. It is written under a temporary name and renamed (two runs may write at once; a crash
leaves no half file), and files of an older key for that shape are removed then. The trace is checked against
the eager model on the batch it was traced with and not used (eager kept, nothing written) if it fails or
differs. GPUs and multi-modal (dict) batches always run eager.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

CACHE_DIR = "inference_cache"


def cache_key(tune_dir: Path, record: dict[str, Any]) -> str:
    """What the frozen model depends on: the checkpoint (size, mtime), the deploy config (content), torch."""
    import torch

    checkpoint = (tune_dir / record["checkpoint"]).stat()
    digest = hashlib.sha256()
    digest.update(f"{checkpoint.st_size}:{checkpoint.st_mtime_ns}:{torch.__version__}:".encode())
    digest.update((tune_dir / record["deploy_config"]).read_bytes())
    return digest.hexdigest()[:16]


class TuneModel:
    """``forward(batch)`` for the streamed predictor, and ``optimise`` (its hook, called on the first batch of a
    large window) that traces, freezes and caches the model for that batch's tile shape.

    ``load_task`` builds the eager task (imports TerraTorch); it runs only when a batch has no frozen model."""

    def __init__(self, load_task: Callable[[], Any], cache_dir: Optional[Path], key: str) -> None:
        self._load_task = load_task
        self.cache_dir = cache_dir
        self.key = key
        self.task: Any = None
        self.load_seconds = 0.0  # building the eager task, and loading or tracing frozen models
        self._frozen: dict[tuple[int, ...], Optional[Callable[[Any], Any]]] = {}

    # ------------------------------------------------------------------------------------------------- running
    def forward(self, batch: Any) -> Any:
        frozen = self._cached(batch)
        return frozen(batch) if frozen is not None else self.eager(batch)

    def eager(self, batch: Any) -> Any:
        return self.load().model(batch).output

    def load(self) -> Any:
        """The eager task, built on first use."""
        if self.task is None:
            started = time.monotonic()
            self.task = self._load_task()
            self.load_seconds += time.monotonic() - started
        return self.task

    def optimise(self, batch: Any) -> Callable[[Any], Any]:
        """Freeze the model for this batch's tile shape (unless cached already); returns ``forward``."""
        if self._cached(batch) is None and self._shape(batch) is not None and self._shape(batch) not in self._frozen:
            self._frozen[self._shape(batch)] = self._trace(batch)
        return self.forward

    # ------------------------------------------------------------------------------------------------- caching
    @staticmethod
    def _shape(batch: Any) -> Optional[tuple[int, ...]]:
        if isinstance(batch, dict) or batch.device.type != "cpu":
            return None
        return tuple(int(n) for n in batch.shape[1:])

    def path(self, shape: tuple[int, ...]) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"frozen-{'x'.join(map(str, shape))}-{self.key}.pt"

    def _cached(self, batch: Any) -> Optional[Callable[[Any], Any]]:
        """The frozen model for this batch's shape: in memory, else from the cache folder (None: run eager)."""
        shape = self._shape(batch)
        if shape is None:
            return None
        if shape not in self._frozen:
            path = self.path(shape)
            if path is None or not path.is_file():
                return None
            import torch

            started = time.monotonic()
            try:
                self._frozen[shape] = optimised(torch.jit.load(str(path), map_location="cpu"))
            except Exception:  # noqa: BLE001 - an unreadable cache file: run eager (and trace anew)
                return None
            self.load_seconds += time.monotonic() - started
        return self._frozen[shape]

    def _trace(self, batch: Any) -> Optional[Callable[[Any], Any]]:
        """Trace and freeze on this batch; the frozen module goes to the cache only if, optimised, it gives the
        eager model's logits on the batch."""
        import torch

        started = time.monotonic()
        model = self.load().model

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: Any) -> Any:
                return self.model(x).output

        path = self.path(self._shape(batch))
        tmp = path.with_name(f".{path.name}.part-{os.getpid()}") if path is not None else None
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the trace's shape warnings: every tile has the traced size
                traced = torch.jit.trace(Logits().eval(), batch, strict=False, check_trace=False)
                frozen = torch.jit.freeze(traced)
                if tmp is not None:
                    self._write(frozen, tmp)
                fast = optimised(frozen)
            with torch.inference_mode():
                if not torch.allclose(fast(batch), self.eager(batch), rtol=1e-4, atol=1e-4):
                    return None
            if tmp is not None:
                self._keep(tmp, path)
        except Exception:  # noqa: BLE001 - a model TorchScript cannot trace runs eager, as before
            return None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            self.load_seconds += time.monotonic() - started
        return fast

    @staticmethod
    def _write(frozen: Any, tmp: Path) -> None:
        import torch

        try:
            tmp.parent.mkdir(exist_ok=True)
            torch.jit.save(frozen, str(tmp))
        except OSError:  # a tune folder that cannot be written: no cache, no error
            pass

    @staticmethod
    def _keep(tmp: Path, path: Path) -> None:
        """Rename the checked file into place; drop this shape's files of other keys (an older checkpoint)."""
        if not tmp.is_file():
            return
        try:
            os.replace(tmp, path)
            shape = path.name.split("-")[1]
            for old in path.parent.glob(f"frozen-{shape}-*.pt"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError:
            pass


def optimised(frozen: Any) -> Any:
    """TorchScript's inference passes (MKLDNN convolutions): measured 1.9 s a batch of 8 tiles against 2.4-3.3 s
    eager. Applied after loading: an optimised module cannot be loaded back (torch 2.x), a frozen one can."""
    import torch

    return torch.jit.optimize_for_inference(frozen)

def tune_model(config: dict[str, Any], tune_dir: Path, record: dict[str, Any], device: str) -> TuneModel:
    """A tune's model for ``device``; on a CPU backed by the tune's frozen-model cache."""
    from .predict import load_task

    cpu = str(device) == "cpu"
    return TuneModel(lambda: load_task(config, tune_dir, record, device), tune_dir / CACHE_DIR if cpu else None,
                     cache_key(tune_dir, record) if cpu else "")
