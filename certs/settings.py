"""Settings of ``fleetgate certs`` (env ``FLEETGATE_HOME``, ``FLEETGATE_PKI__LEAF_DAYS`` ...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from certs.pki import Lifetimes
from fleetgate.settings import CommonSettings


class PkiPolicy(BaseModel):
    """Lifetimes, the broker's extra SANs, and how many processes bulk issuance uses."""

    root_days: int = Field(default=7305, ge=1, le=36_500)
    issuing_days: int = Field(default=3652, ge=1, le=36_500)
    leaf_days: int = Field(default=730, ge=1, le=36_500)
    server_days: int = Field(default=365, ge=1, le=36_500)
    crl_days: int = Field(default=7, ge=1, le=3650)
    server_sans: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra DNS names / IPs of the broker's certificate (comma-separated in env)",
    )
    workers: int = Field(default=0, ge=0, le=256, description="0: one per CPU")

    @field_validator("server_sans", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def lifetimes(self) -> Lifetimes:
        return Lifetimes(
            root=timedelta(days=self.root_days),
            issuing=timedelta(days=self.issuing_days),
            leaf=timedelta(days=self.leaf_days),
            server=timedelta(days=self.server_days),
            crl=timedelta(days=self.crl_days),
        )


class CertsSettings(CommonSettings):
    """``$FLEETGATE_HOME`` (the PKI lives in ``$FLEETGATE_HOME/pki``) and the PKI policy."""

    pki: PkiPolicy = Field(default_factory=PkiPolicy)
