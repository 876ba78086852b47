"""Who may use which source: roles on the source, tenants on the source, groups mapped in settings.

A source lists in `allow` the roles that may use it: Entra app roles as the token carries them in
`roles`, or the names `LOOM_GROUP_ROLES` gives to Entra groups (object ids in the token's
`groups`). `*` lets in every signed-in user of the source's tenants. A source answers only to
users of the tenants in its `tenants`, by default the server's own (`LOOM_ENTRA_TENANT_ID`), so
a partner tenant the server lets sign in sees nothing until a source names it.

The default is closed: under Entra sign-in a source without `allow` answers to nobody (the server
logs which at start). In dev mode there is one user, on this machine, who already holds the data
files and credentials, so every source is open to it; the CLI's local commands are the same.

A source a user may not use is left out of everything that user sees: the sources the model is
told about and may name, the schema context, the source list and the "unknown source" errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from loom.engines.sources import Source
from loom.identity import Principal
from loom.settings import Settings

EVERYONE = "*"


@dataclass(frozen=True)
class SourceAccess:
    open: bool = False  # dev mode and the local CLI: the one local user may use every source
    home_tenant: str = ""  # whose users a source without `tenants` answers to
    group_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group id → roles

    @classmethod
    def of(cls, settings: Settings) -> SourceAccess:
        return cls(
            open=settings.auth_mode == "dev",
            home_tenant=(settings.entra_tenant_id or "").lower(),
            group_roles={g.lower(): tuple(roles) for g, roles in settings.group_roles.items()},
        )

    def roles(self, principal: Principal) -> frozenset[str]:
        """The principal's app roles and the roles its groups are given in settings."""
        mapped = (role for group in principal.groups for role in self.group_roles.get(group.lower(), ()))
        return frozenset((*principal.roles, *mapped))

    def allows(self, principal: Principal, source: Source) -> bool:
        if self.open:
            return True
        tenants = {t.lower() for t in source.tenants} or {self.home_tenant}
        if EVERYONE not in tenants and principal.tenant_id.lower() not in tenants:
            return False
        return EVERYONE in source.allow or not self.roles(principal).isdisjoint(source.allow)

    def visible(self, principal: Principal, sources: Mapping[str, Source]) -> dict[str, Source]:
        """The sources the principal may use, by name, in their configured order."""
        return {name: s for name, s in sources.items() if self.allows(principal, s)}

    def closed(self, sources: Iterable[Source]) -> list[str]:
        """Sources nobody may use (no `allow` list) while sign-in is on: worth a warning at start."""
        return [] if self.open else [s.name for s in sources if not s.allow]


OPEN = SourceAccess(open=True)
