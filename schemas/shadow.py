"""The device shadow: what a vehicle reports, what apps desire, and the document apps get. Pure.

State documents are JSON objects nested at most :data:`MAX_STATE_DEPTH` levels with at most
:data:`MAX_STATE_VALUES` values. In a partial update (``reported``, ``desired``) a key set to
``null`` deletes that key; objects merge key by key; any other value (arrays included)
replaces the old one whole.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, Field, JsonValue

from schemas.base import EpochMs, FleetModel, Version, VinStr, json_object_checker

MAX_STATE_DEPTH: Final = 8
MAX_STATE_VALUES: Final = 1024

ShadowState = Annotated[
    dict[str, JsonValue],
    AfterValidator(json_object_checker(max_depth=MAX_STATE_DEPTH, max_nodes=MAX_STATE_VALUES)),
    Field(
        description=(
            f"A JSON object, at most {MAX_STATE_DEPTH} levels deep and {MAX_STATE_VALUES} values;"
            " in an update, null deletes a key"
        )
    ),
]
ShadowMetadataTree = Annotated[
    dict[str, JsonValue],
    AfterValidator(json_object_checker(max_depth=MAX_STATE_DEPTH, max_nodes=MAX_STATE_VALUES)),
    Field(
        description=(
            "The shape of the state, each leaf replaced by the epoch ms at which it was last"
            " written"
        )
    ),
]


class ShadowReported(FleetModel):
    """``vehicles/<VIN>/shadow/reported``: ``{"state": {…partial…}, "version": <int>?}``.

    ``state`` is merged into the reported state. ``version``, if given, is the vehicle's own
    counter, informational only.
    """

    state: ShadowState
    version: Version | None = None


class ShadowDesired(FleetModel):
    """``vehicles/<VIN>/shadow/desired`` (downlink): ``{"state": {…delta…}, "version": <int>}``.

    ``state`` is the delta (desired values that differ from reported ones); ``version`` the
    shadow document's version it was computed from (a vehicle ignores an older one).
    """

    state: ShadowState
    version: Version


class AppShadowDesired(FleetModel):
    """``apps/<app id>/vehicles/<VIN>/shadow/desired``: ``{"state": {…}, "version": <int>?}``.

    ``state`` is merged into the desired state. With ``version`` the update applies only if
    the document still has that version (optimistic concurrency); otherwise it is rejected.
    """

    state: ShadowState
    version: Version | None = None


class ShadowSections(FleetModel):
    reported: ShadowState = Field(default_factory=dict)
    """What the vehicle last reported (all updates merged)."""
    desired: ShadowState = Field(default_factory=dict)
    """What apps asked for (all updates merged)."""
    delta: ShadowState = Field(default_factory=dict)
    """Desired values that differ from the reported ones: what the vehicle still has to do."""


class ShadowMetadata(FleetModel):
    reported: ShadowMetadataTree = Field(default_factory=dict)
    desired: ShadowMetadataTree = Field(default_factory=dict)


class ShadowDocument(FleetModel):
    """``apps/<app id>/vehicles/<VIN>/shadow`` (downlink): the whole shadow of one vehicle.

    ::

        {"vin": "…", "version": 7, "ts": 1700000000000, "online": true,
         "state": {"reported": {…}, "desired": {…}, "delta": {…}},
         "metadata": {"reported": {"cabin": {"temp": 1700000000000}}, "desired": {…}}}

    ``version`` grows by one with every change of ``reported`` or ``desired``; ``ts`` is when
    the document last changed; ``metadata`` mirrors ``state.reported``/``state.desired`` with
    every leaf replaced by the epoch ms it was last written; ``online`` is the vehicle's last
    known connectivity (null if never seen).
    """

    vin: VinStr
    version: Version
    ts: EpochMs
    online: bool | None = None
    state: ShadowSections = Field(default_factory=ShadowSections)
    metadata: ShadowMetadata = Field(default_factory=ShadowMetadata)
