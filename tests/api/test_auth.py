"""Entra ID bearer tokens, verified against locally minted RS256 keys (no network), and bind safety."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from jwt.algorithms import RSAAlgorithm
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from loom.agent.sqlite_store import SqliteConversationStore
from loom.api.app import create_app
from loom.api.auth import (
    AuthConfigError,
    EntraJwksProvider,
    EntraVerifier,
    JwksUnavailable,
    UnknownSigningKey,
    UnsafeBindError,
    VerifiedTokens,
    check_bind,
)
from loom.api.schemas import ApiError
from loom.identity import Principal
from loom.settings import AzureCloud, Settings

TENANT = "11111111-aaaa-bbbb-cccc-000000000001"
PARTNER = "22222222-aaaa-bbbb-cccc-000000000002"
STRANGER = "33333333-aaaa-bbbb-cccc-000000000003"
AUDIENCE = "api://loom-data-agents"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig", "alg": "RS256"}


@dataclass
class Issuer:
    """Mints tokens like Entra ID does, and serves the matching public keys."""

    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    kid: str = "key-1"
    authority: str = "https://login.microsoftonline.com"
    asked: list[str] = field(default_factory=list)
    down: bool = False

    def claims(self, tenant: str = TENANT, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": f"{self.authority}/{tenant}/v2.0",
            "aud": AUDIENCE,
            "tid": tenant,
            "oid": "user-oid-1",
            "sub": "pairwise-sub",
            "roles": ["Loom.User", "Loom.Admin"],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "ver": "2.0",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, tenant: str = TENANT, *, key: Any = None, kid: str | None = None, **claims: Any) -> str:
        headers = {"kid": kid or self.kid}
        return jwt.encode(self.claims(tenant, **claims), key or self.key, algorithm="RS256", headers=headers)

    async def signing_key(self, tenant_id: str, kid: str) -> PyJWK:
        self.asked.append(tenant_id)
        if self.down:
            raise JwksUnavailable("connection refused")
        if kid != self.kid:
            raise UnknownSigningKey(kid)
        return PyJWK(public_jwk(self.key, self.kid))


def entra_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path,
        "auth_mode": "entra",
        "entra_tenant_id": TENANT,
        "entra_audience": AUDIENCE,
        "entra_allowed_tenants": [PARTNER],
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def issuer(signing_key: rsa.RSAPrivateKey) -> Issuer:
    return Issuer(key=signing_key)


@pytest.fixture
async def client(tmp_path: Path, issuer: Issuer) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteConversationStore(tmp_path / "loom.db")
    app = create_app(entra_settings(tmp_path), store=store, runner=None, jwks=issuer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await store.close()


async def call(client: httpx.AsyncClient, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await client.get("/v1/conversations", headers=headers)


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="loom"')


# --- accepted ----------------------------------------------------------------------------------


async def test_a_valid_token_gives_the_principal_with_roles(tmp_path: Path, issuer: Issuer) -> None:
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    principal = await verifier.verify(issuer.token())
    assert principal == Principal(tenant_id=TENANT, user_id="user-oid-1", roles=("Loom.User", "Loom.Admin"))
    assert issuer.asked == [TENANT]


async def test_the_api_answers_a_valid_token(client: httpx.AsyncClient, issuer: Issuer) -> None:
    response = await call(client, issuer.token())
    assert response.status_code == 200
    assert response.json() == {"conversations": []}


async def test_sub_stands_in_for_a_missing_oid_and_no_roles(tmp_path: Path, issuer: Issuer) -> None:
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    principal = await verifier.verify(issuer.token(oid=None, roles=None))
    assert (principal.user_id, principal.roles) == ("pairwise-sub", ())


async def test_group_claims_are_read_and_a_group_overage_is_logged(
    tmp_path: Path, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    principal = await verifier.verify(issuer.token(groups=["g-1", 7, "g-2"]))
    assert principal.groups == ("g-1", "g-2")  # anything not a string is not a group id
    overage: dict[str, Any] = {"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {}}}
    principal = await verifier.verify(issuer.token(**overage))
    assert principal.groups == () and principal.roles == ("Loom.User", "Loom.Admin")
    assert "too many groups" in caplog.text


@pytest.mark.parametrize(
    "iss", ["https://sts.windows.net/{t}/", "https://login.microsoftonline.com/{t}/v2.0"]
)
async def test_v1_and_v2_issuers_of_the_public_cloud(tmp_path: Path, issuer: Issuer, iss: str) -> None:
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    principal = await verifier.verify(issuer.token(iss=iss.format(t=TENANT)))
    assert principal.tenant_id == TENANT


async def test_an_allowed_partner_tenant_is_accepted(client: httpx.AsyncClient, issuer: Issuer) -> None:
    assert (await call(client, issuer.token(PARTNER))).status_code == 200
    assert issuer.asked == [PARTNER]


async def test_a_token_expired_within_the_leeway_passes(client: httpx.AsyncClient, issuer: Issuer) -> None:
    response = await call(client, issuer.token(exp=int(time.time()) - 20))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "iss",
    [
        "https://login.microsoftonline.us/{t}/v2.0",
        "https://login.microsoftonline.us/{t}/",
        "https://sts.windows.net/{t}/",
    ],
)
async def test_usgov_issuers_are_accepted_in_azure_government(tmp_path: Path, iss: str) -> None:
    gov = Issuer(authority="https://login.microsoftonline.us")
    settings = entra_settings(tmp_path, azure_cloud=AzureCloud.US_GOVERNMENT)
    principal = await EntraVerifier(settings, gov).verify(gov.token(iss=iss.format(t=TENANT)))
    assert principal.tenant_id == TENANT


async def test_a_public_cloud_issuer_is_refused_in_azure_government(tmp_path: Path, issuer: Issuer) -> None:
    settings = entra_settings(tmp_path, azure_cloud=AzureCloud.US_GOVERNMENT)
    store = SqliteConversationStore(tmp_path / "gov.db")
    app = create_app(settings, store=store, jwks=issuer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        assert_refused(await call(c, issuer.token()), "wrong_issuer")
    await store.close()


# --- tokens verified lately ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_token_verified_once_is_not_verified_again_until_it_expires(
    tmp_path: Path, issuer: Issuer
) -> None:
    # Under a loop of refused page reads, decoding and checking the same token on every request
    # was a quarter of the server's interpreter time (benchmarks/page_flood.py).
    clock = Clock()
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    verifier.verified = VerifiedTokens(keep_s=10_000, clock=clock)
    token = issuer.token(exp=int(clock.now) + 120)
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first and issuer.asked == [TENANT]  # no second key lookup
    other = issuer.token(oid="user-oid-2")  # another token is verified in full
    assert (await verifier.verify(other)).user_id == "user-oid-2" and issuer.asked == [TENANT, TENANT]
    clock.now += 120 + 59  # within the leeway after its expiry: still remembered
    await verifier.verify(token)
    assert issuer.asked == [TENANT, TENANT]
    clock.now += 2  # past it: verified in full again (which, in real time, refuses it)
    await verifier.verify(token)
    assert issuer.asked == [TENANT, TENANT, TENANT]


async def test_a_remembered_token_is_checked_again_after_minutes(tmp_path: Path, issuer: Issuer) -> None:
    # A signing key withdrawn from the tenant's key set stops being honoured within `keep_s`.
    clock = Clock()
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    verifier.verified = VerifiedTokens(keep_s=300, clock=clock)
    token = issuer.token()
    await verifier.verify(token)
    issuer.kid = "key-2"  # key-1 withdrawn
    await verifier.verify(token)  # still remembered
    clock.now += 301
    with pytest.raises(ApiError) as refused:
        await verifier.verify(token)
    assert refused.value.code == "unknown_signing_key"


async def test_a_refused_token_is_refused_from_memory_for_a_minute_and_the_memory_is_bounded(
    tmp_path: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # R20-2: a client resending one large forged token made the server decode and check it on
    # every request (12.7 ms each for 94 KB, every tenant slowed 380x).
    clock = Clock()
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    verifier.verified = VerifiedTokens(most=2, clock=clock)
    forged = issuer.token(key=new_key())
    decoded: list[str] = []
    decode = jwt.api_jwt.decode_complete

    def counted(*args: Any, **kwargs: Any) -> Any:
        decoded.append("x")
        return decode(*args, **kwargs)

    monkeypatch.setattr(jwt.api_jwt, "decode_complete", counted)
    raised = []
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            await verifier.verify(forged)
        assert refused.value.code == "bad_signature"
        raised.append(refused.value)
    assert len(decoded) == 1, "the forged token was decoded again"
    # A new exception each time: one raised again chains every raise's traceback (and frames) onto it.
    assert raised[1] is not raised[2] and raised[2].__traceback__ is not None
    assert len(list(_frames(raised[2].__traceback__))) == len(list(_frames(raised[1].__traceback__)))
    clock.now += 61
    with pytest.raises(ApiError):
        await verifier.verify(forged)
    assert len(decoded) == 2
    tokens = [issuer.token(oid=f"user-{i}") for i in range(3)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier.verified._known) == 2
    assert verifier.verified.get(tokens[0]) is None and verifier.verified.get(tokens[2]) is not None


async def test_a_kept_refusal_holds_no_frames_and_a_flood_of_them_keeps_the_verified(
    tmp_path: Path, issuer: Issuer
) -> None:
    # R21-12: kept as raised, each refusal held its traceback's frames; forged tokens, each new,
    # grew the process by 420 MiB and pushed innocent users' tokens out of the cache.
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    verifier.verified = VerifiedTokens(most=4)
    innocent = issuer.token(oid="innocent")
    await verifier.verify(innocent)
    for _ in range(10):
        with pytest.raises(ApiError):
            await verifier.verify(issuer.token(key=new_key()))
    kept = list(verifier.verified._refused.values())
    assert len(kept) == 4
    assert all(e.__traceback__ is None and e.__cause__ is None and e.__context__ is None for e, _ in kept)
    assert verifier.verified.get(innocent) is not None


def _frames(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


async def test_a_key_not_yet_published_is_not_refused_from_memory(tmp_path: Path, issuer: Issuer) -> None:
    # Entra may start signing with a key the cached key set does not have yet: the next request
    # must look again, not be refused for a minute.
    verifier = EntraVerifier(entra_settings(tmp_path), issuer)
    token = issuer.token(kid="key-2")
    with pytest.raises(ApiError) as refused:
        await verifier.verify(token)
    assert refused.value.code == "unknown_signing_key"
    issuer.kid = "key-2"
    assert (await verifier.verify(token)).user_id == "user-oid-1"


# --- refused -----------------------------------------------------------------------------------


async def test_missing_header_is_refused(client: httpx.AsyncClient) -> None:
    response = await call(client, None)
    assert_refused(response, "missing_token")
    assert "invalid_token" not in response.headers["WWW-Authenticate"]  # RFC 6750: no error without a token


async def test_another_scheme_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    response = await client.get("/v1/conversations", headers={"Authorization": f"Basic {issuer.token()}"})
    assert_refused(response, "missing_token")


async def test_an_expired_token_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    response = await call(client, issuer.token(exp=int(time.time()) - 3600))
    assert_refused(response, "token_expired")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "expired" in response.json()["error"]["message"]


async def test_a_token_for_another_audience_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    assert_refused(await call(client, issuer.token(aud="api://someone-else")), "wrong_audience")


@pytest.mark.parametrize(
    "iss",
    [
        f"https://login.microsoftonline.com/{PARTNER}/v2.0",  # another tenant's issuer
        f"https://login.microsoftonline.us/{TENANT}/v2.0",  # another cloud
        f"https://evil.example/{TENANT}/v2.0",
    ],
)
async def test_a_wrong_issuer_is_refused(client: httpx.AsyncClient, issuer: Issuer, iss: str) -> None:
    assert_refused(await call(client, issuer.token(iss=iss)), "wrong_issuer")


async def test_a_token_signed_by_another_key_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    forged = issuer.token(key=new_key())  # same kid, different private key
    assert_refused(await call(client, forged), "bad_signature")


async def test_an_unknown_key_id_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    assert_refused(await call(client, issuer.token(kid="not-published")), "unknown_signing_key")


async def test_a_tenant_not_allowed_is_refused_before_any_key_fetch(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    response = await call(client, issuer.token(STRANGER))
    assert_refused(response, "tenant_not_allowed")
    assert STRANGER in response.json()["error"]["message"]
    assert issuer.asked == []


async def test_a_token_that_is_not_a_jwt_is_refused(client: httpx.AsyncClient) -> None:
    assert_refused(await call(client, "not.a.jwt"), "malformed_token")


async def test_a_token_past_16_000_characters_is_refused_before_it_is_decoded(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    # R20-2: decoding is paid per byte on the event loop; Entra's largest tokens are ~12 KB.
    big = issuer.token(padding="p" * 20_000)
    response = await client.get("/v1/conversations", headers={"Authorization": f"Bearer {big}"})
    assert response.status_code == 401 and "16,000 characters" in response.json()["error"]["message"]
    assert issuer.asked == []


async def test_a_symmetric_token_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    token = jwt.encode(issuer.claims(), "x" * 32, algorithm="HS256", headers={"kid": issuer.kid})
    assert_refused(await call(client, token), "bad_algorithm")


async def test_a_token_without_tenant_or_user_is_refused(client: httpx.AsyncClient, issuer: Issuer) -> None:
    assert_refused(await call(client, issuer.token(tid=None)), "missing_claim")
    assert_refused(await call(client, issuer.token(oid=None, sub=None)), "missing_claim")


@pytest.mark.parametrize("bad", ["x\ud800", "a\nb", "a\u202eb", "x" * 300])
async def test_a_token_whose_ids_cannot_be_stored_or_logged_is_refused(
    client: httpx.AsyncClient, issuer: Issuer, bad: str
) -> None:
    # Probe 35 (R35-3): a signed oid holding a lone surrogate was a 500 when the store encoded it.
    assert_refused(await call(client, issuer.token(oid=bad)), "malformed_token")
    assert_refused(await call(client, issuer.token(tid=bad)), "malformed_token")


async def test_unreachable_keys_answer_503_not_500(client: httpx.AsyncClient, issuer: Issuer) -> None:
    issuer.down = True
    response = await call(client, issuer.token())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "jwks_unavailable"


# --- the default key provider, over real HTTP on 127.0.0.1 -------------------------------------


class _JwksServer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.delay_s = 0.0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                outer.paths.append(self.path)
                time.sleep(outer.delay_s)
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _JwksServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    with _JwksServer() as server:
        yield server


async def test_default_provider_caches_and_refreshes_on_an_unknown_kid(jwks_server: _JwksServer) -> None:
    old, new = new_key(), new_key()
    jwks_server.keys = [public_jwk(old, "old")]
    provider = EntraJwksProvider(jwks_server.url, refresh_cooldown_s=0)
    assert (await provider.signing_key(TENANT, "old")).key_id == "old"
    assert (await provider.signing_key(TENANT, "old")).key_id == "old"
    assert jwks_server.paths == [f"/{TENANT}/discovery/v2.0/keys"]  # the second lookup was cached
    jwks_server.keys = [public_jwk(old, "old"), public_jwk(new, "new")]  # Entra rotates its keys
    assert (await provider.signing_key(TENANT, "new")).key_id == "new"
    assert len(jwks_server.paths) == 2
    with pytest.raises(UnknownSigningKey):
        await provider.signing_key(TENANT, "never-published")


async def test_default_provider_reports_an_unreachable_endpoint() -> None:
    provider = EntraJwksProvider("http://127.0.0.1:9", timeout_s=2)  # discard port: nothing listens
    with pytest.raises(JwksUnavailable):
        await provider.signing_key(TENANT, "any")


async def test_many_first_sights_of_a_slow_tenant_take_one_thread_not_the_turns(
    jwks_server: _JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # R21-7: lookups of one slow tenant's keys held every thread of the pool the turns share.
    jwks_server.keys = [public_jwk(new_key(), "k1")]
    jwks_server.delay_s = 0.3
    threads: set[str] = set()
    at_once = [0, 0]  # now, most
    look_up = jwt.PyJWKClient.get_signing_key

    def watched(client: jwt.PyJWKClient, kid: str) -> Any:
        threads.add(threading.current_thread().name)
        at_once[0] += 1
        at_once[1] = max(at_once)
        try:
            return look_up(client, kid)
        finally:
            at_once[0] -= 1

    monkeypatch.setattr(jwt.PyJWKClient, "get_signing_key", watched)
    provider = EntraJwksProvider(jwks_server.url)
    keys = await asyncio.gather(*(provider.signing_key(TENANT, "k1") for _ in range(40)))
    assert {k.key_id for k in keys} == {"k1"}
    assert len(jwks_server.paths) == 1
    assert threads and all(name.startswith("loom-jwks") for name in threads)
    assert at_once[1] == 1  # one at a time per tenant


async def test_a_tenant_whose_keys_failed_is_answered_at_once_for_a_while(jwks_server: _JwksServer) -> None:
    clock = Clock()
    jwks_server.status = 500
    provider = EntraJwksProvider(jwks_server.url, down_keep_s=10, clock=clock)
    for _ in range(5):
        with pytest.raises(JwksUnavailable):
            await provider.signing_key(TENANT, "k1")
    assert len(jwks_server.paths) == 1  # the four after it were not sent
    jwks_server.status, jwks_server.keys = 200, [public_jwk(new_key(), "k1")]
    clock.now += 11
    assert (await provider.signing_key(TENANT, "k1")).key_id == "k1"


async def provider_knowing_k1(jwks_server: _JwksServer) -> tuple[EntraJwksProvider, Clock]:
    """A provider on its own clock that has found the tenant's one key, `k1`."""
    clock = Clock()
    jwks_server.keys = [public_jwk(new_key(), "k1")]
    provider = EntraJwksProvider(jwks_server.url, refresh_cooldown_s=0, clock=clock)
    assert (await provider.signing_key(TENANT, "k1")).key_id == "k1"
    return provider, clock


async def test_a_known_key_is_served_while_a_refresh_for_an_unknown_one_fails(
    jwks_server: _JwksServer,
) -> None:
    # R24-5: a token naming a key never published made a refresh that failed; every new token of
    # the tenant, its key known, then waited behind it and got 503 for 10 s.
    provider, clock = await provider_knowing_k1(jwks_server)
    jwks_server.status = 500  # the key endpoint fails from now on
    with pytest.raises(JwksUnavailable):
        await provider.signing_key(TENANT, "forged-kid")
    fetched = len(jwks_server.paths)
    assert (await provider.signing_key(TENANT, "k1")).key_id == "k1"  # not 503, not fetched again
    assert len(jwks_server.paths) == fetched


async def test_key_ids_never_published_make_one_fetch_a_cooldown(jwks_server: _JwksServer) -> None:
    # R25-5: each forged key id, no signature needed, made a fetch of the tenant's keys (15 a second).
    clock = Clock()
    jwks_server.keys = [public_jwk(new_key(), "k1")]
    provider = EntraJwksProvider(jwks_server.url, refresh_cooldown_s=30, clock=clock)
    for n in range(20):
        with pytest.raises(UnknownSigningKey):
            await provider.signing_key(TENANT, f"forged-{n}")
    assert len(jwks_server.paths) <= 2  # the first look, and its refresh
    assert (await provider.signing_key(TENANT, "k1")).key_id == "k1"  # known keys are not held up
    # R26-3: past its lifespan, a real key was refused as unknown while forgeries kept coming.
    clock.now += 3_601
    with pytest.raises(UnknownSigningKey):
        await provider.signing_key(TENANT, "forged-again")
    assert (await provider.signing_key(TENANT, "k1")).key_id == "k1"


async def test_a_known_key_past_its_lifespan_is_honoured_a_while_when_keys_cannot_be_fetched(
    jwks_server: _JwksServer,
) -> None:
    # R27-1: past the hour, a forged key id's failed refresh made every real sign-in of the tenant 503.
    provider, clock = await provider_knowing_k1(jwks_server)
    jwks_server.status = 500
    provider._clients.clear()  # noqa: SLF001  # a fetch now fails, as the client's own cache would lapse
    clock.now += 3_601
    assert (await provider.signing_key(TENANT, "k1")).key_id == "k1"
    clock.now += 3_600  # two lifespans: no longer
    with pytest.raises(JwksUnavailable):
        await provider.signing_key(TENANT, "k1")


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_dev_mode_refuses_a_non_loopback_bind(tmp_path: Path, host: str) -> None:
    with pytest.raises(UnsafeBindError, match="only bind 127.0.0.1, ::1 or localhost"):
        check_bind(Settings(home=tmp_path, auth_mode="dev"), host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_dev_mode_allows_loopback(tmp_path: Path, host: str) -> None:
    check_bind(Settings(home=tmp_path, auth_mode="dev"), host)


def test_entra_mode_may_bind_anywhere(tmp_path: Path) -> None:
    check_bind(entra_settings(tmp_path), "0.0.0.0")


def test_entra_mode_without_an_audience_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="LOOM_ENTRA_AUDIENCE"):
        create_app(entra_settings(tmp_path, entra_audience=None))


@pytest.mark.parametrize("client", ["10.0.0.7", "192.168.1.20", "2001:db8::1", "testclient"])
async def test_dev_mode_answers_only_this_machine_however_the_app_was_started(
    tmp_path: Path, client: str
) -> None:
    # As under `uvicorn --factory loom.api.app:create_app --host 0.0.0.0`: no `loom serve` check ran.
    store = SqliteConversationStore(tmp_path / "dev.db")
    app = create_app(Settings(home=tmp_path), store=store, runner=None)
    transport = httpx.ASGITransport(app=app, client=(client, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as c:
        refused = await c.get("/v1/conversations")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "dev_mode_loopback_only"
        assert (await c.delete("/v1/conversations/x")).status_code == 403
        assert (await c.get("/healthz")).status_code == 200  # probes carry no data
    await store.close()


@pytest.mark.parametrize(
    ("peer", "header"),
    [
        ("10.0.0.7", ("x-forwarded-for", "127.0.0.1")),  # uvicorn --forwarded-allow-ips '*'
        ("10.0.0.7", ("forwarded", "for=127.0.0.1")),
        ("127.0.0.1", ("x-forwarded-for", "127.0.0.1")),  # a proxy on this machine: from elsewhere
        ("127.0.0.1", ("x-real-ip", "10.0.0.7")),
    ],
)
async def test_dev_mode_refuses_a_request_forwarded_for_a_client(
    tmp_path: Path, peer: str, header: tuple[str, str]
) -> None:
    # Probe 34 (R34-1): with forwarded headers trusted, `X-Forwarded-For: 127.0.0.1` from any
    # peer became request.client, and the dev user's conversations were served to it.
    store = SqliteConversationStore(tmp_path / "dev.db")
    loom: Any = create_app(Settings(home=tmp_path), store=store, runner=None)  # ASGI types differ by library
    proxied: Any = ProxyHeadersMiddleware(loom, "*")
    transport = httpx.ASGITransport(app=proxied, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as c:
        refused = await c.get("/v1/conversations", headers=[header])
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "dev_mode_loopback_only"
    await store.close()


async def test_dev_mode_answers_a_loopback_client(tmp_path: Path) -> None:
    store = SqliteConversationStore(tmp_path / "dev.db")
    app = create_app(Settings(home=tmp_path), store=store, runner=None)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as c:
        assert (await c.get("/v1/conversations")).status_code == 200
    await store.close()
