"""An OpenID Connect relying party for the console: discovery, the authorization request
(code flow with PKCE S256, state and nonce), the code exchange and the ID token's
verification (PyJWT against the issuer's JWKS: signature, issuer, audience, expiry, nonce).

Nothing an issuer says reaches a user verbatim: failures are `OidcError` with a short reason
of ours (the audit log keeps it; the browser gets a code)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import jwt

from tollway.frozen import frozen

# Asymmetric algorithms only: "none" and the HMAC family (keyed with the client secret, which
# a confused verifier could be tricked into using as a public key) are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DISCOVERY_TTL_S = 3600.0
JWKS_REFRESH_MIN_S = 60.0  # an unknown key id refetches the JWKS at most this often
LEEWAY_S = 30
TIMEOUT_S = 10.0


class OidcError(Exception):
    """A sign-in that cannot go on; `code` is what the browser is told."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@frozen
class Flow:
    """What the browser keeps (an HttpOnly cookie) between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str


@frozen
class _Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    fetched_at: float


def new_flow() -> Flow:
    return Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcClient:
    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: str,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._scopes = scopes
        self._session: aiohttp.ClientSession | None = None
        self._discovery: _Discovery | None = None
        self._jwks: jwt.PyJWKSet | None = None
        self._jwks_at = 0.0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        return self._session

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http().get(url, headers={"Accept": "application/json"}) as r:
                if r.status != 200:
                    raise OidcError("issuer_error", f"issuer answered HTTP {r.status} for {url}")
                body = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("issuer_error", f"issuer unreachable: {type(exc).__name__}") from exc
        if not isinstance(body, dict):
            raise OidcError("issuer_error", f"issuer sent no JSON object from {url}")
        return body

    async def discovery(self) -> _Discovery:
        found = self._discovery
        if found is not None and time.monotonic() - found.fetched_at < DISCOVERY_TTL_S:
            return found
        doc = await self._get_json(self.issuer + "/.well-known/openid-configuration")
        try:
            found = _Discovery(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                fetched_at=time.monotonic(),
            )
        except KeyError as exc:
            raise OidcError("issuer_error", f"discovery document lacks {exc}") from exc
        if found.issuer.rstrip("/") != self.issuer:
            raise OidcError("issuer_error", "discovery document names another issuer")
        self._discovery = found
        return found

    async def authorization_url(self, flow: Flow, redirect_uri: str) -> str:
        found = await self.discovery()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self._scopes,
                "state": flow.state,
                "nonce": flow.nonce,
                "code_challenge": challenge_of(flow.verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in found.authorization_endpoint else "?"
        return f"{found.authorization_endpoint}{separator}{query}"

    async def exchange(self, code: str, flow: Flow, redirect_uri: str) -> dict[str, Any]:
        """The code → tokens at the token endpoint; returns the ID token's verified claims."""
        found = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": flow.verifier,
        }
        headers = {"Accept": "application/json"}
        if self._secret is not None:  # client_secret_basic (RFC 6749 §2.3.1: form-encoded)
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            async with self._http().post(found.token_endpoint, data=form, headers=headers) as r:
                body = await r.json(content_type=None)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("issuer_error", f"token endpoint: {type(exc).__name__}") from exc
        if status != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise OidcError(
                "denied", f"token endpoint refused the code (HTTP {status}, {error!s:.60})"
            )
        token = body.get("id_token")
        if not isinstance(token, str):
            raise OidcError("invalid_token", "the token response has no id_token")
        return await self.verify(token, nonce=flow.nonce)

    async def verify(self, token: str, *, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError("invalid_token", "the ID token is not a JWT") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OidcError("invalid_token", f"ID token algorithm {str(alg)[:20]!r} refused")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.client_id,
                issuer=(await self.discovery()).issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise OidcError("invalid_token", "the ID token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise OidcError("invalid_token", "the ID token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise OidcError("invalid_token", "the ID token is from another issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise OidcError("invalid_token", "the ID token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise OidcError("invalid_token", f"the ID token is invalid: {str(exc)[:80]}") from exc
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
            claims["nonce"], nonce
        ):
            raise OidcError("invalid_token", "the ID token's nonce does not match this sign-in")
        return claims

    async def _key(self, kid: object) -> Any:
        jwks = await self._jwk_set(refresh=False)
        found = _find(jwks, kid)
        if found is None and time.monotonic() - self._jwks_at >= JWKS_REFRESH_MIN_S:
            found = _find(await self._jwk_set(refresh=True), kid)  # the issuer rotated keys
        if found is None:
            raise OidcError(
                "invalid_token", "the ID token is signed by a key the issuer does not publish"
            )
        return found

    async def _jwk_set(self, *, refresh: bool) -> jwt.PyJWKSet:
        if self._jwks is None or refresh:
            doc = await self._get_json((await self.discovery()).jwks_uri)
            try:
                self._jwks = jwt.PyJWKSet.from_dict(doc)
            except jwt.PyJWTError as exc:
                raise OidcError("issuer_error", "the issuer's JWKS is unusable") from exc
            self._jwks_at = time.monotonic()
        return self._jwks


def _find(jwks: jwt.PyJWKSet, kid: object) -> Any:
    """The key named by `kid`; without a kid, the issuer's only key (never a guess)."""
    if kid is None:
        return jwks.keys[0].key if len(jwks.keys) == 1 else None
    for key in jwks.keys:
        if key.key_id == kid:
            return key.key
    return None
