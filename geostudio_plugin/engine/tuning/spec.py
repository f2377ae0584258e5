"""The tune spec: the Studio's tune submission (TuneSubmitIn), pointing at local names.

``dataset_id`` is a dataset in the workspace, ``base_model_id`` a backbone name
(``timm_resnet18``) and ``tune_template_id`` a template id or its Studio name
(``timm_resnet_seg`` or ``timm_resnet : Segmentation``).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..device import LEGACY_ACCELERATORS
from ..device import PATTERN as DEVICE_PATTERN
from ..specs import MAX_SEED, DataSource, ItemId, LabelCategory, StudioModel


STRATEGIES = ("auto", "ddp")  # the engine runs DDP ranks as its own worker processes (tuning/train.py)
PRECISIONS = ("16-mixed", "bf16-mixed", "32-true", "32", "16-true", "bf16-true", "64-true", "64", "16", "bf16")


class TrainOptions(StudioModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    label_categories: Optional[list[LabelCategory]] = None
    model_input_data_spec: Optional[list[DataSource]] = None
    geoserver_push: list[dict[str, Any]] = []
    post_processing: dict[str, Any] = {}
    tune_type: str = ""
    # GeoStudio additions for running on the user's own machine
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        default="auto", description="the older device setting (Lightning's names); TuneSpec.device wins")
    devices: int = Field(default=1, ge=1, le=64, description="how many GPUs (device cuda) or CPU processes "
                         "(device cpu) train together, one DDP rank each")
    strategy: Literal[STRATEGIES] = Field(default="auto", description="auto: one process, or DDP when devices or "
                                          "num_nodes is above 1; ddp: Lightning's distributed data parallel")
    num_nodes: int = Field(default=1, ge=1, le=1024, description="machines in a cluster run (export_cluster); "
                           "the engine itself trains on one")
    precision: Optional[str] = Field(default=None, description="default: 16-mixed on a GPU, 32 on a CPU")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    limit_train_batches: Optional[float] = Field(default=None, gt=0, le=1e6, description="fraction or count per epoch")
    weights: str = Field(default="random", max_length=4096,
                         description="where the backbone starts: random (default), pretrained (its published "
                                     "weights, from the Hugging Face cache) or the path of a local checkpoint file")
    dry_run: bool = Field(default=False, description="render the full TerraTorch config and keep it as a tune "
                          "with status DryRun; nothing is trained")
    resume_from: Optional[ItemId] = Field(default=None, description="continue this Cancelled or Failed tune from "
                                          "its last checkpoint to its planned max_epochs")
    export_cluster: Optional[str] = Field(default=None, min_length=1, max_length=4096,
                                          description="write a self-contained folder here (config with relative "
                                          "paths, the dataset, torchrun and SLURM launch scripts) instead of training")

    @field_validator("precision", mode="before")
    @classmethod
    def _lightning_precision(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        text = str(value).strip()
        if text not in PRECISIONS:
            raise ValueError(f"{value!r} is not a precision Lightning knows; use one of: {', '.join(PRECISIONS)}")
        return text

    @model_validator(mode="after")
    def _one_mode(self) -> "TrainOptions":
        if self.dry_run and self.resume_from:
            raise ValueError("dry_run and resume_from exclude each other: a dry run renders a new tune's config")
        if self.export_cluster and (self.dry_run or self.resume_from):
            raise ValueError("export_cluster excludes dry_run and resume_from: it renders a new tune for a cluster")
        return self

    @field_validator("limit_train_batches")
    @classmethod
    def _fraction_or_count(cls, value: Optional[float]) -> Optional[float]:
        if value is not None and value > 1 and not float(value).is_integer():
            raise ValueError(f"{value} is neither a fraction (at most 1.0) nor a whole number of batches")
        return value


class TuneSpec(StudioModel):
    name: str
    description: str = ""
    dataset_id: ItemId = Field(min_length=1)
    base_model_id: str = Field(min_length=1)
    tune_template_id: str = Field(min_length=1)
    model_parameters: dict[str, Any] = {}
    train_options: TrainOptions = TrainOptions()
    device: str = Field(default="", pattern=DEVICE_PATTERN.replace("^(", "^(|gpu|"),
                        description="auto, cpu, cuda, cuda:N or mps; empty: train_options.accelerator")

    @model_validator(mode="after")
    def _device(self) -> "TuneSpec":
        """One device setting: ``device``, else the older ``train_options.accelerator`` ("gpu" is cuda)."""
        chosen = self.device or self.train_options.accelerator
        self.device = LEGACY_ACCELERATORS.get(chosen, chosen)
        return self

    @model_validator(mode="after")
    def _template_parameters(self) -> "TuneSpec":
        """``model_parameters`` checked against the template's schema now, before any dataset is read.

        An unknown template is left to the tune (it names the known ones); a bad parameter raises the
        template's own error (``unknown_parameter``/``invalid_parameter``), which pydantic passes through.
        """
        from ..catalog import find_template
        from ..protocol import SpecError
        from .render import merge_parameters

        try:
            template = find_template(self.tune_template_id)
        except SpecError:
            return self
        merge_parameters(template["model_params"], self.model_parameters)
        return self

    @field_validator("name")
    @classmethod
    def _studio_name(cls, value: str) -> str:
        """The Studio's rule: 4-30 characters, letters, digits, '-' and '.'; spaces and '_' become '-'."""
        name = re.sub(r"[\s_]+", "-", value.strip())
        if not re.fullmatch(r"[A-Za-z0-9.-]{4,30}", name):
            raise ValueError("use 4 to 30 letters, digits, '-' or '.' (spaces and '_' become '-')")
        return name
