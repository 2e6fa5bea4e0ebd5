"""The run record: ``training.json``, one validated shape written by one function for every model family.

Every trained row (CNN, probe, fine-tune, metadata model, ensemble) leaves a :class:`TrainingRecord` beside its
model file. It holds everything needed to use the model again without the stage that made it or the prepare
stage's outputs: what it is (kind, framework), what it predicts (classes, in probability-column order), what it
reads (input size, image preprocessing), the model file and its sha256 (checked when loaded), the seed, the
effective params, where it ran and how long each epoch took. ``lesionlab predict``, Grad-CAM and the report read
it through :func:`read_record`, which names the file and the key when a record does not hold.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lesionlab.pipeline.contracts import ContractError

RECORD_FILE = "training.json"
#: bumped when the record's shape changes; a record of another version is refused with the reason
RECORD_VERSION = 2


class TrainingRecord(BaseModel):
    """What one model stage records about the model it trained (or why it could not train one: ``skipped``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_version: int = RECORD_VERSION
    variant: str
    dataset: str
    kind: str = Field(
        description="the model family (lesionlab.models.families): cnn, probe, finetune, tabular, ensemble"
    )
    framework: str = Field(description="keras, torch, lightgbm, scikit-learn; an ensemble joins its members' with +")
    classes: list[str] = Field(min_length=1, description="the probability columns, in order")
    input_size: int = Field(
        ge=1,
        description="side of the square uint8 images it reads (a metadata model reads "
        "none: the side its dataset's rows were decoded at, so predict checks each image opens)",
    )
    preprocess: dict[str, str] = Field(
        default_factory=lambda: {"color_constancy": "none", "resize": "squash"},
        description="how its images were decoded (lesionlab.data.preprocess.Preprocess)",
    )
    weights_file: str | None = Field(None, description="the trained model's file in the record's folder")
    weights_sha256: str | None = None
    seed: int
    config: dict[str, Any] = Field(description="the effective params of the row (defaults + its overrides)")
    device: str = "cpu"
    compute: dict[str, Any] | None = Field(
        None, description="device, precision, memory layout and Keras backend it ran with (lesionlab.models.compute)"
    )
    python: str = Field(default_factory=platform.python_version)
    epoch_seconds: list[float] = Field(default_factory=list)
    skipped: str | None = Field(None, description="why the stage trained nothing on this dataset")
    backbone: str | None = None
    weights: dict[str, Any] | None = Field(
        None,
        description="the pretrained weights a backbone started from "
        "(lesionlab.models.weights record: file, sha256, source)",
    )
    details: dict[str, Any] = Field(default_factory=dict, description="what only this family needs to load it again")

    def preprocessing(self):
        from lesionlab.data.preprocess import Preprocess

        return Preprocess(**self.preprocess)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_record(out: Path, weights_file: str | None = None, **fields) -> TrainingRecord:
    """Validate and write ``<out>/training.json`` (the one writer); ``weights_file`` (in ``out``) is hashed."""
    if weights_file is not None:
        fields.update(weights_file=weights_file, weights_sha256=sha256_file(out / weights_file))
    if "preprocess" in fields and not isinstance(fields["preprocess"], dict):
        from dataclasses import asdict

        fields["preprocess"] = asdict(fields["preprocess"])
    try:
        record = TrainingRecord(**fields)
    except ValidationError as err:  # a bug in the writer, named before a half-valid record reaches disk
        raise ContractError(f"{out / RECORD_FILE}: invalid training record: {err}") from None
    (out / RECORD_FILE).write_text(json.dumps(record.model_dump(exclude_none=True), indent=2) + "\n")
    return record


def read_record(folder: Path, check_weights: bool = False) -> TrainingRecord:
    """``<folder>/training.json`` validated (ContractError naming the file and keys); with ``check_weights`` the
    model file must still have the sha256 it was trained with."""
    path = folder / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder.name!r} has not been trained (run `dvc repro`)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ContractError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("record_version") != RECORD_VERSION:
        got = raw.get("record_version") if isinstance(raw, dict) else None
        raise ContractError(
            f"{path}: training record version {got!r}, this code reads version {RECORD_VERSION}: "
            "retrain the row (`dvc repro`)"
        )
    try:
        record = TrainingRecord(**raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ContractError(f"{path}: not a valid training record: {problems}") from None
    if check_weights and record.weights_file is not None:
        found = sha256_file(folder / record.weights_file)
        if found != record.weights_sha256:
            raise ContractError(
                f"{folder / record.weights_file}: sha256 {found[:16]}… is not the one recorded at "
                f"training ({(record.weights_sha256 or '')[:16]}…): the model file changed since; "
                "retrain the row (`dvc repro`)"
            )
    return record
