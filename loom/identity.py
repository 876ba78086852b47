"""Who is asking: every request carries a Principal, and every store is keyed by its tenant."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Principal(BaseModel, frozen=True):
    tenant_id: str
    user_id: str
    roles: tuple[str, ...] = Field(default_factory=tuple)  # Entra app roles (the token's `roles`)
    groups: tuple[str, ...] = Field(default_factory=tuple)  # Entra group object ids (`groups`)


DEV_PRINCIPAL = Principal(tenant_id="dev-tenant", user_id="dev-user", roles=("Loom.User",))
