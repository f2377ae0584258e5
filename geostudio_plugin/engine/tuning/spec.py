"""The tune spec: the Studio's tune submission (TuneSubmitIn), pointing at local names.

``dataset_id`` is a dataset in the workspace, ``base_model_id`` a backbone name
(``timm_resnet18``) and ``tune_template_id`` a template id or its Studio name
(``timm_resnet_seg`` or ``timm_resnet : Segmentation``).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, field_validator

from ..specs import DataSource, LabelCategory, StudioModel


class TrainOptions(StudioModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    label_categories: Optional[list[LabelCategory]] = None
    model_input_data_spec: Optional[list[DataSource]] = None
    geoserver_push: list[dict[str, Any]] = []
    post_processing: dict[str, Any] = {}
    tune_type: str = ""
    # GeoStudio additions for running on the user's own machine
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int = Field(default=1, ge=1)
    precision: Optional[str] = Field(default=None, description="default: 16-mixed on a GPU, 32 on a CPU")
    seed: int = 0
    limit_train_batches: Optional[float] = Field(default=None, gt=0, description="fraction or count per epoch")


class TuneSpec(StudioModel):
    name: str
    description: str = ""
    dataset_id: str = Field(min_length=1)
    base_model_id: str = Field(min_length=1)
    tune_template_id: str = Field(min_length=1)
    model_parameters: dict[str, Any] = {}
    train_options: TrainOptions = TrainOptions()

    @field_validator("name")
    @classmethod
    def _studio_name(cls, value: str) -> str:
        """The Studio's rule: 4-30 characters, letters, digits, '-' and '.'; spaces and '_' become '-'."""
        name = re.sub(r"[\s_]+", "-", value.strip())
        if not re.fullmatch(r"[A-Za-z0-9.-]{4,30}", name):
            raise ValueError("use 4 to 30 letters, digits, '-' or '.' (spaces and '_' become '-')")
        return name
