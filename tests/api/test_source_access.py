"""Authorization on sources: who sees and queries which source, across tenants, roles and groups.

The API tests sign requests with locally minted Entra tokens (see test_auth) and run the real agent
over a seeded lakehouse, so what is checked is what a user gets: the source list, the 422 for a
source they may not use, what the model is told, and what a tool call naming another source gets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loom.access import OPEN, SourceAccess
from loom.agent.build import build_agent
from loom.agent.sqlite_store import SqliteConversationStore
from loom.agent.testing import ScriptedModel, sql_block, text, tool_call
from loom.api.app import create_app
from loom.engines.sources import DuckDBSource
from loom.identity import Principal
from loom.lakehouse.seed import seed_lakehouse
from loom.settings import Settings
from tests.api.test_auth import AUDIENCE, PARTNER, TENANT, Issuer

HR_GROUP = "9F0E4C1A-0000-4000-8000-00000000AAAA"  # as Entra writes it; settings may differ in case
SOURCES = [
    {"name": "sales", "location": "lakehouse", "allow": ["Sales.Reader"]},
    {"name": "payroll", "location": "lakehouse", "allow": ["HR"]},
    {"name": "partner_share", "location": "lakehouse", "allow": ["*"], "tenants": [PARTNER]},
    {"name": "unassigned", "location": "lakehouse"},
]


def settings_for(home: Path) -> Settings:
    return Settings(
        home=home,
        sources_file=home / "sources.yaml",
        auth_mode="entra",
        entra_tenant_id=TENANT,
        entra_audience=AUDIENCE,
        entra_allowed_tenants=[PARTNER],
        group_roles={HR_GROUP.lower(): ["HR"]},
    )


def who(tenant: str = TENANT, roles: tuple[str, ...] = (), groups: tuple[str, ...] = ()) -> Principal:
    return Principal(tenant_id=tenant, user_id="u", roles=roles, groups=groups)


# --- the policy ----------------------------------------------------------------------------------


def source(**fields: Any) -> DuckDBSource:
    return DuckDBSource(name="s", location="/data", **fields)


def test_a_source_without_an_allow_list_answers_to_nobody_under_sign_in(tmp_path: Path) -> None:
    access = SourceAccess.of(settings_for(tmp_path))
    closed = source()
    assert not access.allows(who(roles=("Loom.User", "Loom.Admin", "*")), closed)
    assert access.closed([closed, source(allow=("R",))]) == ["s"]


def test_a_role_in_the_token_or_given_to_a_group_lets_a_user_in(tmp_path: Path) -> None:
    access = SourceAccess.of(settings_for(tmp_path))
    assert access.allows(who(roles=("Sales.Reader",)), source(allow=("Sales.Reader",)))
    assert not access.allows(who(roles=("sales.reader",)), source(allow=("Sales.Reader",)))  # exact
    assert access.allows(who(groups=(HR_GROUP,)), source(allow=("HR",)))
    assert not access.allows(who(groups=("another-group",), roles=("Sales.Reader",)), source(allow=("HR",)))


def test_a_source_answers_to_its_own_tenants_only(tmp_path: Path) -> None:
    access = SourceAccess.of(settings_for(tmp_path))
    everyone = source(allow=("*",))
    assert access.allows(who(TENANT), everyone)
    assert not access.allows(who(PARTNER), everyone)  # default: the server's own tenant
    shared = source(allow=("*",), tenants=(PARTNER.upper(),))
    assert access.allows(who(PARTNER), shared)
    assert not access.allows(who(TENANT), shared)
    assert access.allows(who(PARTNER), source(allow=("*",), tenants=("*",)))


def test_dev_mode_and_the_local_cli_open_every_source(tmp_path: Path) -> None:
    assert SourceAccess.of(Settings(home=tmp_path)).allows(who("dev-tenant"), source())
    assert OPEN.allows(who("anyone"), source()) and OPEN.closed([source()]) == []


def test_who_may_use_a_source_is_not_part_of_its_connection(tmp_path: Path) -> None:
    # Changing a source's allow list must not reload its data or open a second engine for it.
    assert source(allow=("A",)).connection_key == source(allow=("B",), tenants=("t",)).connection_key


# --- through the API ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("access")
    seed_lakehouse(root / "lakehouse", orders=200)
    (root / "sources.yaml").write_text(yaml.safe_dump({"sources": SOURCES}))
    return root


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


class Api:
    def __init__(self, client: httpx.AsyncClient, issuer: Issuer, model: ScriptedModel) -> None:
        self.client, self.issuer, self.model = client, issuer, model

    def headers(self, tenant: str = TENANT, **claims: Any) -> dict[str, str]:
        claims.setdefault("roles", None)
        return {"Authorization": f"Bearer {self.issuer.token(tenant, **claims)}"}

    async def sources(self, tenant: str = TENANT, **claims: Any) -> list[str]:
        response = await self.client.get("/v1/sources", headers=self.headers(tenant, **claims))
        assert response.status_code == 200, response.text
        return [s["name"] for s in response.json()["sources"]]

    async def chat(self, body: dict[str, Any], tenant: str = TENANT, **claims: Any) -> httpx.Response:
        return await self.client.post("/v1/chat", json=body, headers=self.headers(tenant, **claims))


@pytest.fixture
async def api(home: Path, issuer: Issuer) -> AsyncIterator[Api]:
    settings = settings_for(home)
    model = ScriptedModel()
    store = SqliteConversationStore(home / f"{id(model)}.db")
    app = create_app(settings, store=store, runner=build_agent(settings, store, model=model), jwks=issuer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://loom.test") as c:
        yield Api(c, issuer, model)
    await store.close()


async def test_each_user_lists_only_the_sources_open_to_them(api: Api) -> None:
    assert await api.sources(roles=["Sales.Reader"]) == ["sales"]
    assert await api.sources(groups=[HR_GROUP]) == ["payroll"]
    assert await api.sources(roles=["Sales.Reader", "Loom.Admin"], groups=[HR_GROUP]) == ["sales", "payroll"]
    assert await api.sources(PARTNER, roles=["Sales.Reader"]) == ["partner_share"]
    assert await api.sources(roles=["Loom.User"]) == []  # signed in, but given no source


async def test_asking_for_a_source_one_may_not_use_is_the_same_422_as_for_one_that_does_not_exist(
    api: Api,
) -> None:
    forbidden = await api.chat({"message": "hi", "sources": ["payroll"]}, roles=["Sales.Reader"])
    missing = await api.chat({"message": "hi", "sources": ["no_such"]}, roles=["Sales.Reader"])
    assert forbidden.status_code == missing.status_code == 422
    assert forbidden.json()["error"]["code"] == missing.json()["error"]["code"] == "unknown_source"
    assert "known sources: sales" in forbidden.json()["error"]["message"]
    for hidden in ("partner_share", "unassigned"):
        assert hidden not in forbidden.text


async def test_the_model_is_told_of_and_may_name_only_the_users_sources(api: Api) -> None:
    api.model.queue(text("Hello."))
    response = await api.chat({"message": "What can you query?"}, roles=["Sales.Reader"])
    assert response.status_code == 200, response.text
    call = api.model.calls[-1]
    system = call.messages[0].content
    assert "`sales`" in system
    assert all(f"`{name}`" not in system for name in ("payroll", "partner_share", "unassigned"))
    enum = call.tools[0]["function"]["parameters"]["properties"]["source"]["enum"]
    assert enum == ["sales"]


async def test_a_tool_call_naming_a_source_the_user_may_not_use_runs_nothing(api: Api) -> None:
    api.model.queue(
        tool_call("nl2sql", {"question": "Total salary?", "source": "payroll"}),
        text("I cannot see that source."),
    )
    response = await api.chat({"message": "Total salary?"}, roles=["Sales.Reader"])
    results = [e for e in _events(response) if e["type"] == "TOOL_CALL_RESULT"]
    assert len(results) == 1
    error = json.loads(results[0]["content"])["error"]
    assert error["code"] == "unknown_source"
    assert "payroll" in error["message"] and "sales" in error["message"]
    assert len(api.model.calls) == 2  # the outer model twice: no inner call wrote SQL for payroll


async def test_a_user_given_no_source_is_offered_no_data_tool(api: Api) -> None:
    api.model.queue(text("I have no data source I may use for you."))
    response = await api.chat({"message": "How many orders?"}, roles=["Loom.User"])
    assert response.status_code == 200, response.text
    call = api.model.calls[-1]
    assert call.tools == []
    assert "no data source is open to this user" in call.messages[0].content


async def test_a_partner_tenant_user_sees_only_what_is_shared_with_their_tenant(api: Api) -> None:
    api.model.queue(text("ok"))
    response = await api.chat({"message": "hi"}, PARTNER, roles=["Sales.Reader"], groups=[HR_GROUP])
    assert response.status_code == 200, response.text
    enum = api.model.calls[-1].tools[0]["function"]["parameters"]["properties"]["source"]["enum"]
    assert enum == ["partner_share"]


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


async def test_results_from_a_source_the_user_lost_are_withheld_from_the_model(api: Api) -> None:
    api.model.queue(
        tool_call("nl2sql", {"question": "How many order lines?", "source": "payroll"}),
        sql_block("SELECT COUNT(*) AS secret_lines FROM gold.fact_sales"),
        text("That many."),
    )
    first = await api.chat({"message": "How many order lines?"}, groups=[HR_GROUP])
    conversation = _events(first)[0]["threadId"]
    assert any("secret_lines" in m.content for m in api.model.calls[-1].messages)

    api.model.queue(text("ok"))  # the same user, whose HR group was taken away
    later = await api.chat({"message": "And again?", "conversation_id": conversation}, roles=["Sales.Reader"])
    assert later.status_code == 200, later.text
    seen = api.model.calls[-1].messages
    assert not any("secret_lines" in m.content for m in seen)
    assert any(m.role == "tool" and "no longer use" in m.content for m in seen)
