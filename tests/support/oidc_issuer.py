"""A small OpenID Connect issuer for tests, served on loopback: discovery, JWKS, an
authorization endpoint that signs in whoever the test says (no login form), and a token
endpoint that checks the client's secret, the code (single use), the redirect URI and the
PKCE verifier before it answers with an RS256-signed ID token.

`mode` makes the next ID token wrong in one way: "forged" (signed by a key the JWKS does not
publish, same kid), "expired", "wrong_audience", "wrong_issuer", "wrong_nonce", "hs256"
(signed with the client secret)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.servers import serving

KID = "test-key-1"


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class LoopbackIssuer:
    client_id: str = "tollway-console"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    url: str = ""
    # Who the next authorization signs in (the ID token's claims besides the standard ones).
    user: dict[str, Any] = field(
        default_factory=lambda: {"sub": "u-1", "preferred_username": "ada"}
    )
    mode: str = "ok"
    token_requests: int = 0

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._grants: dict[str, _Grant] = {}

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}

    def id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.claims,
        }
        key: Any = self._key
        algorithm = "RS256"
        if self.mode == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif self.mode == "wrong_audience":
            claims["aud"] = "someone-else"
        elif self.mode == "wrong_issuer":
            claims["iss"] = "https://impostor.example"
        elif self.mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.mode == "forged":
            key = self._forger
        elif self.mode == "hs256":
            key, algorithm = self.client_secret, "HS256"
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": KID})

    async def _discovery(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _jwks(self, _request: Request) -> Response:
        return JSONResponse(self.jwks())

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if (
            q.get("response_type") != "code"
            or q.get("client_id") != self.client_id
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or "openid" not in q.get("scope", "").split()
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self._grants[code] = _Grant(
            self.client_id,
            q["redirect_uri"],
            q["code_challenge"],
            q.get("nonce", ""),
            dict(self.user),
        )
        return RedirectResponse(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}",
            status_code=302,
        )

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await request.form()
        basic = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if basic != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self._grants.pop(str(form.get("code", "")), None)
        if grant is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if challenge != grant.challenge or form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant),
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
            ]
        )


@contextmanager
def running_issuer() -> Iterator[LoopbackIssuer]:
    issuer = LoopbackIssuer()
    with serving(issuer.app(), lifespan_off=True) as port:
        issuer.url = f"http://127.0.0.1:{port}"
        yield issuer
