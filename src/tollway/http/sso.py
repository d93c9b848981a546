"""Console single sign-on over HTTP (docs/console.md): start an OIDC sign-in, take the
issuer's answer, tell the console who is signed in, sign out.

Cookies: the sign-in's flow (state, nonce, PKCE verifier) rides in `tollway_oidc_flow`
(HttpOnly, SameSite=Lax — it must come back on the issuer's cross-site redirect — path
/auth/oidc, ten minutes); the session in `tollway_session` (HttpOnly, SameSite=Strict, path /,
the session's lifetime). Both are Secure when the request came over HTTPS."""

from __future__ import annotations

import base64
import binascii
import logging

import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from tollway.errors import NotFound, Unauthorized
from tollway.http.deps import CSRF_HEADER, SESSION_COOKIE, app_state, exchange_of
from tollway.sso.oidc import Flow, OidcError, new_flow
from tollway.sso.sessions import SignInRefused, csrf_token_of

router = APIRouter(include_in_schema=False)
log = logging.getLogger("tollway.sso")

FLOW_COOKIE = "tollway_oidc_flow"
FLOW_PATH = "/auth/oidc"
FLOW_MAX_AGE_S = 600
CONSOLE = "/console/"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _redirect_uri(request: Request) -> str:
    configured = app_state(request).settings.oidc_redirect_url
    return configured or f"{str(request.base_url).rstrip('/')}{FLOW_PATH}/callback"


def _encode_flow(flow: Flow) -> str:
    raw = orjson.dumps([flow.state, flow.nonce, flow.verifier])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_flow(value: str | None) -> Flow | None:
    if not value or len(value) > 1024:
        return None
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError):
        return None
    if isinstance(parts, list) and len(parts) == 3 and all(isinstance(p, str) for p in parts):
        return Flow(parts[0], parts[1], parts[2])
    return None


def _failed(code: str) -> RedirectResponse:
    response = RedirectResponse(f"{CONSOLE}?sso_error={code}", status_code=303)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


@router.get("/auth/session")
async def session_state(request: Request) -> JSONResponse:
    """What the console needs before it renders: whether single sign-on is offered, and the
    signed-in session (user, projects with roles, the CSRF token to echo), if any."""
    state = app_state(request)
    body: dict[str, object] = {"oidc": state.sessions is not None, "signed_in": False}
    token = request.cookies.get(SESSION_COOKIE)
    if state.sessions is not None and token:
        try:
            view = await state.sessions.view(token)
        except Unauthorized:
            view = None
        if view is not None:
            body.update(
                signed_in=True,
                user=view.user,
                user_id=view.user_id,
                projects=[{"id": p.id, "name": p.name, "role": p.role} for p in view.projects],
                csrf_token=csrf_token_of(token),
                expires_at_ms=view.expires_at_ms,
            )
    return JSONResponse(body, headers={"cache-control": "no-store"})


@router.get(f"{FLOW_PATH}/login")
async def login(request: Request) -> Response:
    oidc = app_state(request).oidc
    if oidc is None:
        raise NotFound("single sign-on is not configured")
    flow = new_flow()
    try:
        url = await oidc.authorization_url(flow, _redirect_uri(request))
    except OidcError as exc:
        log.warning("oidc sign-in not started: %s", exc.reason)
        return _failed(exc.code)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        _encode_flow(flow),
        max_age=FLOW_MAX_AGE_S,
        path=FLOW_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


@router.get(f"{FLOW_PATH}/callback")
async def callback(request: Request) -> Response:
    state = app_state(request)
    if state.oidc is None or state.sessions is None:
        raise NotFound("single sign-on is not configured")
    request_id = exchange_of(request).request_id
    flow = _decode_flow(request.cookies.get(FLOW_COOKIE))
    params = request.query_params
    code = params.get("code")
    try:
        if flow is None or params.get("state") != flow.state:
            raise OidcError("bad_state", "the sign-in's state does not match (start again)")
        if params.get("error") or not code:
            raise OidcError("denied", f"the issuer refused: {params.get('error', 'no code')[:60]}")
        claims = await state.oidc.exchange(code, flow, _redirect_uri(request))
    except OidcError as exc:
        log.warning("oidc sign-in refused: %s", exc.reason)
        if exc.code != "bad_state":  # a stray or replayed callback is not a sign-in attempt
            await state.sessions.refused(exc.code, exc.reason, claimed=None, request_id=request_id)
        return _failed(exc.code)
    try:
        created = await state.sessions.sign_in(claims, request_id=request_id)
    except SignInRefused as exc:
        log.warning("oidc sign-in refused: %s", exc)
        return _failed(exc.code)
    response = RedirectResponse(f"{CONSOLE}#/overview", status_code=303)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    response.set_cookie(
        SESSION_COOKIE,
        created.token,
        max_age=created.max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.delete("/auth/session")
async def sign_out(request: Request) -> Response:
    state = app_state(request)
    token = request.cookies.get(SESSION_COOKIE)
    if state.sessions is None or not token:
        raise Unauthorized("no console session")
    await state.sessions.sign_out(
        token, csrf=request.headers.get(CSRF_HEADER), request_id=exchange_of(request).request_id
    )
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
