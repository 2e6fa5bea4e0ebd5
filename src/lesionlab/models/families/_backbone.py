"""What the two backbone families (probes and fine-tunes) share: their params (``probe:``/``finetune:`` defaults,
``probes:``/``finetunes:`` rows). Training and loading live in :mod:`lesionlab.models.transfer`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from lesionlab.params_base import Section, overrides_of, registered_backbone

STRATEGIES = ("linear_probe", "partial", "full")


class BackboneParams(Section):
    """Training config of a pretrained-backbone variant (``probe:`` and ``finetune:`` defaults)."""

    backbone: str = "efficientnet_lite0"
    weights: Literal["imagenet", "random"] = "imagenet"
    strategy: Literal["linear_probe", "partial", "full"] = "partial"
    trainable_blocks: int = Field(4, ge=0, description="partial: how many of the last backbone stages train")
    image_size: int | None = Field(None, ge=32, le=512, description="input side; None = prepare.backbone_image_size")
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    patience: int = Field(3, ge=1)
    head: Literal["linear", "mlp"] = "linear"
    hidden_units: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    focal_gamma: float = Field(2.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    class_weights: bool = True
    sampler: Literal["shuffle", "class_balanced"] = "shuffle"
    mixup: float = Field(0.0, ge=0, description="Beta(a, a) mixing coefficient; 0 = off")
    cutmix: float = Field(0.0, ge=0, description="Beta(a, a) box share; 0 = off")
    ema: float = Field(0.0, ge=0, lt=1, description="EMA decay of the weights (e.g. 0.999); 0 = off")
    augment: bool = True
    tta: bool = True

    @field_validator("backbone")
    @classmethod
    def _registered(cls, v: str | None) -> str | None:
        return v if v is None else registered_backbone(v)


BackboneVariantParams = overrides_of(
    BackboneParams,
    "BackboneVariantParams",
    "A probe or fine-tune variant: a description plus any subset of the section's defaults it overrides.",
)


def with_image_size(params, cfg: BackboneParams) -> BackboneParams:
    """``image_size: null`` means the backbone cache's size (``prepare.backbone_image_size``)."""
    if cfg.image_size is not None:
        return cfg
    return cfg.model_copy(update={"image_size": params.prepare.backbone_image_size})
