"""Who is calling: the Principal of a request, in dev mode (fixed) or from an Entra ID access token.

Entra tokens are verified locally: RS256 signature against the tenant's published keys (JWKS),
issuer for the configured cloud, audience, expiry, and an allow-list of tenants. Every failure is a
401 naming the reason, so a misconfigured client can tell what to fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import jwt
from fastapi import Request
from jwt import PyJWK, PyJWKClient

from loom.api.schemas import ApiError
from loom.identity import DEV_PRINCIPAL, Principal
from loom.settings import LOGIN_AUTHORITY, AzureCloud, Settings

ALGORITHMS = ["RS256"]
LEEWAY_S = 60  # clock skew between Entra and this host
# Entra access tokens are 1.5-3 KB, up to ~12 KB with 200 groups (past that Entra leaves the groups
# out). Decoding is paid per byte on the event loop: a 94 KB token took 12.7 ms to refuse (probe 20).
MAX_TOKEN_CHARS = 16_000
REFUSED_KEEP_S = 60.0  # a refused token is refused again from memory for this long
REALM = 'Bearer realm="loom"'
T = TypeVar("T")
log = logging.getLogger(__name__)


# --- configuration checks (at startup) ---------------------------------------------------------


class AuthConfigError(RuntimeError):
    """The server's auth settings are unsafe or incomplete; it must not start."""


class UnsafeBindError(AuthConfigError):
    """Dev mode (no authentication) on an address other machines can reach."""


MAX_ID_CHARS = 256  # of a tenant's or a user's id in a token (Entra's are 36-character GUIDs)
# Headers a proxy names the original client with (RFC 7239, and the de facto ones).
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to serve without authentication anywhere but on loopback."""
    if settings.auth_mode == "dev" and not is_loopback(host):
        raise UnsafeBindError(
            f"auth_mode is 'dev' (no authentication, everyone is {DEV_PRINCIPAL.user_id}); it may only bind "
            f"127.0.0.1, ::1 or localhost, not {host!r}. Set LOOM_AUTH_MODE=entra to serve on {host}."
        )


def check_auth_config(settings: Settings) -> None:
    if settings.auth_mode == "entra" and not (settings.entra_tenant_id and settings.entra_audience):
        raise AuthConfigError("auth_mode 'entra' needs LOOM_ENTRA_TENANT_ID and LOOM_ENTRA_AUDIENCE")


# --- signing keys ------------------------------------------------------------------------------


class UnknownSigningKey(Exception):
    """The token names a key id the tenant does not publish (even after a refresh)."""


class JwksUnavailable(Exception):
    """The tenant's key set could not be fetched."""


class JwksProvider(Protocol):
    async def signing_key(self, tenant_id: str, kid: str) -> PyJWK:
        """The tenant's public key with this id; raises UnknownSigningKey or JwksUnavailable."""
        ...


class EntraJwksProvider:
    """Keys from `{authority}/{tenant}/discovery/v2.0/keys`, cached; an unknown kid triggers one refresh
    (rate-limited by PyJWKClient's cooldown, so forged kids cannot make us hammer Entra).

    PyJWKClient blocks, so lookups run on threads, and a slow key endpoint held every thread of the
    pool the turns share, 85 fetches of one tenant's keys at once (probe 21: R21-7). So lookups run
    on a pool of their own, one at a time per tenant (the others wait, then read the cache), and a
    tenant whose keys could not be fetched is answered 503 at once for `down_keep_s`. A key already
    found is served from memory, outside both: a token naming a key id the tenant never published
    (no signature needed) made a slow refresh that every new token of the tenant waited behind, then
    got 503 for though its key was known (probe 24: R24-5)."""

    def __init__(
        self,
        authority: str,
        *,
        timeout_s: float = 5.0,
        lifespan_s: float = 3600.0,
        refresh_cooldown_s: float = 30.0,
        down_keep_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.timeout_s = timeout_s
        self.lifespan_s = lifespan_s
        self.refresh_cooldown_s = refresh_cooldown_s
        self.down_keep_s, self._clock = down_keep_s, clock
        self._clients: dict[str, PyJWKClient] = {}
        self._one_at_a_time: dict[str, asyncio.Lock] = {}  # per tenant: only allowed tenants get here
        self._down: dict[str, tuple[str, float]] = {}  # tenant → (why, until when)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="loom-jwks")
        self._found: dict[tuple[str, str], tuple[PyJWK, float]] = {}  # (tenant, kid) → key, when found
        self._unknown_at: dict[str, float] = {}  # tenant → when a key id it does not publish was looked up

    def _client(self, tenant_id: str) -> PyJWKClient:
        if tenant_id not in self._clients:
            uri = f"{self.authority}/{tenant_id}/discovery/v2.0/keys"
            self._clients[tenant_id] = PyJWKClient(
                uri,
                lifespan=self.lifespan_s,
                timeout=self.timeout_s,
                cooldown_duration=self.refresh_cooldown_s,
            )
        return self._clients[tenant_id]

    async def signing_key(self, tenant_id: str, kid: str) -> PyJWK:
        key, found_at = self._found.get((tenant_id, kid), (None, 0.0))
        age = self._clock() - found_at
        if key is not None and age < self.lifespan_s:
            return key
        try:
            return await self._fetched(tenant_id, kid, known=key is not None)
        except JwksUnavailable:
            # A key found before is honoured for one more lifespan while the tenant's keys cannot be
            # fetched: else a forged key id's failed refresh made every real sign-in 503 (R27-1).
            if key is None or age >= 2 * self.lifespan_s:
                raise
            log.warning(
                "tenant %s: keys could not be fetched; key %s, found %.0f s ago, still honoured",
                tenant_id,
                kid,
                age,
            )
            return key

    async def _fetched(self, tenant_id: str, kid: str, known: bool) -> PyJWK:
        self._check_up(tenant_id)
        if not known and self._clock() - self._unknown_at.get(tenant_id, -math.inf) < self.refresh_cooldown_s:
            # A key id seen unknown lately: forged ones, each new, made a fetch each (15 a second,
            # no token needed: probe 25, R25-5). Entra's new keys are published well before use.
            # Only for key ids never found: a real key past its lifespan was refused so (R26-3).
            raise UnknownSigningKey(f"no key {kid!r} (the tenant's keys were fetched moments ago)")
        client = self._client(tenant_id)
        async with self._one_at_a_time.setdefault(tenant_id, asyncio.Lock()):
            self._check_up(tenant_id)  # it went down while this one waited
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._pool, client.get_signing_key, kid
                )
            except jwt.PyJWKClientConnectionError as e:
                self._down[tenant_id] = (str(e), self._clock() + self.down_keep_s)
                raise JwksUnavailable(str(e)) from e
            except jwt.PyJWKClientError as e:
                self._unknown_at[tenant_id] = self._clock()
                raise UnknownSigningKey(str(e)) from e
            finally:
                self._remember(tenant_id, client)

    def _remember(self, tenant_id: str, client: PyJWKClient) -> None:
        """Every key of the set the client holds now (no fetch), so that each is served from memory."""
        cached = client.jwk_set_cache.get() if client.jwk_set_cache is not None else None
        for key in cached.keys if cached is not None else ():
            if key.key_id:  # found again: its lifespan counts from now (R27-1)
                self._found[(tenant_id, key.key_id)] = (key, self._clock())

    def _check_up(self, tenant_id: str) -> None:
        why, until = self._down.get(tenant_id, ("", 0.0))
        if self._clock() < until:
            raise JwksUnavailable(f"{why} (not tried again for {self.down_keep_s:g}s)")


# --- token verification ------------------------------------------------------------------------


def unauthorized(code: str, message: str) -> ApiError:
    challenge = REALM if code == "missing_token" else f'{REALM}, error="invalid_token"'
    description = message.replace('"', "'")
    headers = {"WWW-Authenticate": f'{challenge}, error_description="{description}"'}
    return ApiError(401, code, message, headers=headers)


def issuers(cloud: AzureCloud, tenant_id: str) -> set[str]:
    """The issuers Entra writes for a tenant: v2.0 tokens name the cloud's authority; v1 tokens name
    sts.windows.net in the public cloud, and in Azure Government either form is seen in the field."""
    v2 = {f"{LOGIN_AUTHORITY[cloud]}/{tenant_id}/v2.0"}
    if cloud is AzureCloud.US_GOVERNMENT:
        return v2 | {f"{LOGIN_AUTHORITY[cloud]}/{tenant_id}/", f"https://sts.windows.net/{tenant_id}/"}
    return v2 | {f"https://sts.windows.net/{tenant_id}/"}


# Most specific first: PyJWT's exceptions subclass each other (InvalidSignatureError is a DecodeError).
_DECODE_ERRORS: list[tuple[type[Exception], str, str]] = [
    (jwt.ExpiredSignatureError, "token_expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid", "the token is not valid yet"),
    (jwt.InvalidAudienceError, "wrong_audience", "the token is for another audience"),
    (jwt.InvalidIssuerError, "wrong_issuer", "the token's issuer is not this tenant's Entra ID"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "bad_algorithm", "the token must be signed with RS256"),
    (jwt.MissingRequiredClaimError, "missing_claim", "the token lacks a required claim"),
]


def _decode_error(error: jwt.PyJWTError) -> ApiError:
    for cls, code, message in _DECODE_ERRORS:
        if isinstance(error, cls):
            return unauthorized(code, f"{message}: {error}" if code == "missing_claim" else message)
    return unauthorized("malformed_token", f"the token cannot be read: {error}")


def _unverified(token: str) -> tuple[str, str]:
    """The key id and tenant, read before verification only to choose the key set."""
    try:
        parts = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise unauthorized("malformed_token", f"the token cannot be read: {e}") from e
    header, claims = parts["header"], parts["payload"]
    if header.get("alg") not in ALGORITHMS:
        raise unauthorized("bad_algorithm", "the token must be signed with RS256")
    kid, tid = header.get("kid"), claims.get("tid")
    if not isinstance(kid, str) or not kid:
        raise unauthorized("malformed_token", "the token has no key id (kid)")
    if not isinstance(tid, str) or not tid:
        raise unauthorized("missing_claim", "the token has no tenant id (tid)")
    if not _well_formed(tid):
        raise unauthorized("malformed_token", "the token's tenant id (tid) is not a valid id")
    return kid, tid


def _principal(claims: dict[str, Any]) -> Principal:
    user = claims.get("oid") or claims.get("sub")
    if not isinstance(user, str) or not user:
        raise unauthorized("missing_claim", "the token has no user id (oid or sub)")
    if not _well_formed(user):
        raise unauthorized("malformed_token", "the token's user id (oid or sub) is not a valid id")
    if "groups" in (claims.get("_claim_names") or {}):
        # Group overage: the user is in more groups than a token carries, and Entra left them out.
        # Reading them needs Microsoft Graph; app roles assigned to those groups arrive in `roles`.
        log.warning("the token of %s has too many groups to carry; only its app roles count", user)
    return Principal(
        tenant_id=claims["tid"].lower(),
        user_id=user,
        roles=_strings(claims.get("roles")),
        groups=_strings(claims.get("groups")),
    )


def _well_formed(claim: str) -> bool:
    """An id that can be stored, logged and compared: printable, encodable, of a sane length.
    Entra's are GUIDs; a signed token whose `oid` held a lone surrogate was a 500 when the store
    encoded it, and one holding a newline could forge a log line (probe 35: R35-3)."""
    return len(claim) <= MAX_ID_CHARS and claim.isprintable()  # surrogates are not printable


def _strings(claim: object) -> tuple[str, ...]:
    return tuple(v for v in claim if isinstance(v, str)) if isinstance(claim, list) else ()


class EntraVerifier:
    def __init__(self, settings: Settings, jwks: JwksProvider | None = None) -> None:
        check_auth_config(settings)
        self.cloud = settings.azure_cloud
        self.audience = settings.entra_audience
        self.allowed = _lower([settings.entra_tenant_id or "", *settings.entra_allowed_tenants])
        self.jwks = jwks or EntraJwksProvider(LOGIN_AUTHORITY[settings.azure_cloud])
        self.verified = VerifiedTokens()

    async def verify(self, token: str) -> Principal:
        known = self.verified.get(token)
        if isinstance(known, ApiError):
            # A new exception each time: raising the kept one again would chain every raise's
            # traceback (and the frames' requests) onto it, for as long as it is kept.
            raise _fresh(known)
        if known is not None:
            return known
        try:
            principal, expires = await self._verify(token)
        except ApiError as e:
            if e.status_code == 401 and _lasting(e):
                self.verified.refuse(token, e)
            raise
        self.verified.put(token, principal, expires)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The token's principal and expiry (epoch s), verified in full, or ApiError 401/503."""
        kid, tid = _unverified(token)
        # Checked before any key fetch, so a token cannot make us fetch keys of an arbitrary tenant.
        if tid.lower() not in self.allowed:
            raise unauthorized("tenant_not_allowed", f"tenant {tid} is not allowed on this server")
        key = await self._key(tid.lower(), kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=issuers(self.cloud, tid),
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.PyJWTError as e:
            raise _decode_error(e) from e
        return _principal(claims), float(claims["exp"])

    async def _key(self, tenant_id: str, kid: str) -> PyJWK:
        try:
            return await self.jwks.signing_key(tenant_id, kid)
        except UnknownSigningKey as e:
            raise unauthorized("unknown_signing_key", f"the token's key id {kid!r} is not published") from e
        except JwksUnavailable as e:
            raise ApiError(503, "jwks_unavailable", "cannot fetch Entra signing keys; try again") from e


class VerifiedTokens:
    """Tokens checked lately, by their SHA-256, so a client's every request does not pay for
    decoding and an RS256 check again: that was a quarter of the server's interpreter time under a
    loop of refused page reads (`benchmarks/page_flood.py`, py-spy). A verified token is used until
    it expires (with the same leeway as the check) and for at most `keep_s`, so a signing key
    withdrawn from the tenant's key set stops being honoured within minutes. A refused one is
    refused again for `refused_keep_s` (a client resending one large bad token cost the server
    12.7 ms a request: probe 20, R20-2), kept as a bare copy: the refusal as raised held its
    traceback's frames and requests, and a flood of forged tokens grew the process by 420 MiB
    (probe 21: R21-12). Refusals are kept apart from the verified, so that a flood of them
    cannot push innocent users' tokens out. Each bounded, least recently used first out."""

    def __init__(
        self,
        most: int = 4096,
        keep_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        refused_keep_s: float = REFUSED_KEEP_S,
    ) -> None:
        self.most, self.keep_s, self.refused_keep_s, self._clock = most, keep_s, refused_keep_s, clock
        # token digest → (who, or why refused; good until)
        self._known: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._refused: OrderedDict[bytes, tuple[ApiError, float]] = OrderedDict()

    def get(self, token: str) -> Principal | ApiError | None:
        key = _digest(token)
        return _recall(self._known, key, self._clock()) or _recall(self._refused, key, self._clock())

    def put(self, token: str, principal: Principal, expires: float) -> None:
        until = min(expires + LEEWAY_S, self._clock() + self.keep_s)
        _keep(self._known, _digest(token), (principal, until), self.most)

    def refuse(self, token: str, error: ApiError) -> None:
        until = self._clock() + self.refused_keep_s
        _keep(self._refused, _digest(token), (_fresh(error), until), self.most)


def _recall(kept: OrderedDict[bytes, tuple[T, float]], key: bytes, now: float) -> T | None:
    found = kept.get(key)
    if found is None:
        return None
    if now >= found[1]:
        del kept[key]
        return None
    kept.move_to_end(key)
    return found[0]


def _keep(kept: OrderedDict[bytes, tuple[T, float]], key: bytes, value: tuple[T, float], most: int) -> None:
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > most:
        kept.popitem(last=False)


def _fresh(error: ApiError) -> ApiError:
    """The same refusal, never raised: no traceback, cause or frames (and the requests they hold)."""
    return ApiError(error.status_code, error.code, str(error.detail), dict(error.headers or {}))


def _lasting(refusal: ApiError) -> bool:
    """Whether a refusal holds for the next minute too: not a 503 (the key service may be back),
    a token not valid yet (it may be soon), or a key not yet seen (Entra may have just published it)."""
    return refusal.code not in ("token_not_yet_valid", "unknown_signing_key")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _lower(values: Iterable[str]) -> set[str]:
    return {v.lower() for v in values if v}


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("missing_token", "send 'Authorization: Bearer <Entra ID access token>'")
    if len(token) > MAX_TOKEN_CHARS:
        raise unauthorized("malformed_token", f"the token is over {MAX_TOKEN_CHARS:,} characters")
    return token.strip()


async def authenticate(request: Request) -> Principal:
    """The calling Principal (a FastAPI dependency), by Settings.auth_mode."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:  # the guard authenticated this request before its body was read
        return known
    settings: Settings = request.app.state.settings
    if settings.auth_mode == "dev":
        return _dev_principal(request)
    verifier: EntraVerifier = request.app.state.verifier
    return await verifier.verify(bearer_token(request))


def _dev_principal(request: Request) -> Principal:
    """Dev mode answers loopback clients only, however the app was started: `loom serve` refuses a
    public bind, but `uvicorn --factory loom.api.app:create_app --host 0.0.0.0` would otherwise
    hand every conversation of the dev user to anyone on the network."""
    client = request.client.host if request.client else ""
    if not is_loopback(client) or _forwarded(request):
        raise ApiError(
            403,
            "dev_mode_loopback_only",
            "this server runs in dev mode (no authentication) and answers only this machine, "
            "directly (not through a proxy); "
            "set LOOM_AUTH_MODE=entra to serve other clients",
        )
    return DEV_PRINCIPAL


def _forwarded(request: Request) -> bool:
    """Whether the request names a client it was forwarded for. A proxy's request came from
    elsewhere; and uvicorn trusting forwarded headers (`--forwarded-allow-ips '*'`, common in
    containers) puts their address in `request.client`, so `X-Forwarded-For: 127.0.0.1` from
    anywhere passed for this machine (probe 34: R34-1)."""
    return any(name in request.headers for name in FORWARDING_HEADERS)
