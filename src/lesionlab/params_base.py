"""What every params.yaml section model is built from: shared by :mod:`lesionlab.config` (the core sections and
the assembled ``Params``) and the model families (:mod:`lesionlab.models.families`), which declare their own sections.
"""

from __future__ import annotations

import difflib
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """params.yaml is malformed; the message names every offending key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


#: keys of a params.yaml row that describe the row rather than configure its model
ROW_ONLY = ("description", "parent")


def overrides_of(defaults: type[BaseModel], name: str, doc: str, **extra) -> type[BaseModel]:
    """The override model of a defaults section, derived rather than restated: a ``description``, a ``parent``
    (:data:`ROW_ONLY`: keys of the row, never of its effective config) plus every field
    of ``defaults``, optional (None: keep the section's default) with the same type and bounds; the defaults'
    validators are inherited (each lets None through). ``extra``: more fields (an ensemble's ``members``)."""
    from pydantic import create_model

    fields: dict[str, Any] = {
        "description": (str, ""),
        "parent": (
            Optional[str],  # noqa: UP045 - as below
            Field(
                None,
                description="the rung this row changes one thing of (any leaderboard row): the report's step "
                "effect is this row minus its parent, paired over lesions and seeds",
            ),
        ),
    }
    for key, info in defaults.model_fields.items():
        field = Field(None, description=info.description)
        field.metadata.extend(info.metadata)  # ge / le / min_length ...
        fields[key] = (Optional[info.annotation], field)  # noqa: UP045 - any annotation object, built at run time
    fields.update(extra)
    return create_model(name, __base__=defaults, __doc__=doc, **fields)


def registered_backbone(name: str) -> str:
    from lesionlab.models.backbones import BACKBONES

    if name not in BACKBONES:
        close = difflib.get_close_matches(name, list(BACKBONES), n=1)
        raise ValueError(
            f"unknown backbone {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
            f"registered: {sorted(BACKBONES)}"
        )
    return name
