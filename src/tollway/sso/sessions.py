"""Console sessions after an OIDC sign-in: the user a session is bound to, the projects it
may act in, and the CSRF token the console must echo (docs/console.md).

The cookie carries a random token; the database keeps its SHA-256 digest. The CSRF token is
derived from the session token (a keyed digest), so it needs no storage and is worthless
without the cookie. Every sign-in, refusal and sign-out is an audit row."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from sqlalchemy.exc import IntegrityError

from tollway.audit.actor import Actor
from tollway.clock import Clock
from tollway.errors import Forbidden, Unauthorized
from tollway.frozen import frozen
from tollway.gateway.auth import Principal
from tollway.ids import new_id
from tollway.keys.secrets import NAME_PATTERN, digest_of
from tollway.store import accounts, audit, sessions
from tollway.store.accounts import UserRow
from tollway.store.database import Database
from tollway.store.sessions import ProjectOfUser

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class SignInRefused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@frozen
class NewSession:
    token: str
    user: str
    max_age_s: int


@frozen
class SessionView:
    user_id: str
    user: str
    projects: list[ProjectOfUser]
    expires_at_ms: int


def csrf_token_of(token: str) -> str:
    return hmac.new(token.encode(), b"tollway-console-csrf", hashlib.sha256).hexdigest()


def user_name_from(claims: dict[str, Any], claim: str) -> str | None:
    """The user name a claim maps to, when it is one Tollway can use as a name (an e-mail
    address keeps its local part's characters: `ada.l@example.com` → `ada.l_example.com`)."""
    value = claims.get(claim)
    if not isinstance(value, str) or not value:
        return None
    name = _SAFE_NAME.sub("_", value.replace("@", "_"))
    return name if NAME_PATTERN.fullmatch(name) else None


def admin_projects(claims: dict[str, Any], claim: str | None, prefix: str) -> list[str]:
    """Project names the admin claim grants (values `<prefix><project>`)."""
    if claim is None:
        return []
    values = claims.get(claim)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return []
    return sorted({v[len(prefix) :] for v in values if isinstance(v, str) and v.startswith(prefix)})


class ConsoleSessions:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        issuer: str,
        user_claim: str,
        admin_claim: str | None,
        admin_prefix: str,
        create_users: bool,
        lifetime_s: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._issuer = issuer
        self._user_claim = user_claim
        self._admin_claim = admin_claim
        self._admin_prefix = admin_prefix
        self._create_users = create_users
        self.lifetime_s = lifetime_s

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def refused(
        self, code: str, reason: str, *, claimed: str | None, request_id: str
    ) -> None:
        """Record a failed sign-in (its own transaction: nothing else changes)."""
        async with self._db.write() as conn:
            await audit.append(
                conn,
                Actor("session", (claimed or "unknown")[:128], None, request_id),
                action="console.sign_in_failed",
                target=f"oidc/{self._issuer}",
                project_id=None,
                now_ms=self._now_ms(),
                after={"reason": reason[:200], "code": code},
            )

    async def sign_in(self, claims: dict[str, Any], *, request_id: str) -> NewSession:
        """A session for the user the verified claims name; SignInRefused (recorded) when the
        claim is unusable or the user unknown and creation not allowed."""
        name = user_name_from(claims, self._user_claim)
        subject = str(claims.get("sub", ""))
        if name is None:
            reason = f"claim '{self._user_claim}' is missing or not a usable user name"
            await self.refused("unknown_user", reason, claimed=subject, request_id=request_id)
            raise SignInRefused("unknown_user", reason)
        token = secrets.token_urlsafe(32)
        now_ms = self._now_ms()
        try:
            user, created = await self._user_for(name, now_ms=now_ms, request_id=request_id)
        except IntegrityError:  # a concurrent first sign-in of the same user created it
            user, created = await self._user_for(name, now_ms=now_ms, request_id=request_id)
        if user is None:
            reason = f"no user '{name}' and the operator does not create users on sign-in"
            await self.refused("unknown_user", reason, claimed=name, request_id=request_id)
            raise SignInRefused("unknown_user", reason)
        actor = Actor("session", name, user.id, request_id)
        async with self._db.write() as conn:
            for project_name in admin_projects(claims, self._admin_claim, self._admin_prefix):
                project = await accounts.project_by_name(conn, project_name)
                if project is None:
                    continue
                before = await accounts.role_of(conn, user.id, project.id)
                if before == "admin":
                    continue
                await accounts.upsert_membership(conn, user.id, project.id, "admin")
                await audit.append(
                    conn,
                    actor,
                    action="membership.set",
                    target=f"membership/{project_name}/{name}",
                    project_id=project.id,
                    now_ms=now_ms,
                    before=None if before is None else {"user_id": user.id, "role": before},
                    after={"user_id": user.id, "role": "admin", "via": f"oidc:{self._admin_claim}"},
                )
            await sessions.prune_expired(conn, now_ms)
            await sessions.insert_session(
                conn,
                digest=digest_of(token),
                user_id=user.id,
                subject=subject,
                now_ms=now_ms,
                expires_at_ms=now_ms + self.lifetime_s * 1000,
            )
            await audit.append(
                conn,
                actor,
                action="console.sign_in",
                target=f"user/{name}",
                project_id=None,
                now_ms=now_ms,
                after={"subject": subject[:255], "issuer": self._issuer, "created_user": created},
            )
        return NewSession(token, name, self.lifetime_s)

    async def _user_for(
        self, name: str, *, now_ms: int, request_id: str
    ) -> tuple[UserRow | None, bool]:
        """The user of that name; created (and audited) when unknown and allowed."""
        async with self._db.write() as conn:
            user = await accounts.user_by_name(conn, name)
            if user is not None or not self._create_users:
                return user, False
            user_id = new_id()
            await accounts.insert_user(conn, user_id, name, now_ms // 1000)
            await audit.append(
                conn,
                Actor("session", name, user_id, request_id),
                action="user.create",
                target=f"user/{name}",
                project_id=None,
                now_ms=now_ms,
                after={"user_id": user_id, "name": name, "via": "oidc"},
            )
            return UserRow(user_id, name, 0), True

    async def view(self, token: str) -> SessionView:
        async with self._db.read() as conn:
            row = await sessions.live_session(conn, digest_of(token), self._now_ms())
            if row is None:
                raise Unauthorized("the console session has expired or was signed out")
            projects = await sessions.projects_of_user(conn, row.user_id)
        return SessionView(row.user_id, row.user_name, projects, row.expires_at_ms)

    async def principal(self, token: str, *, csrf: str | None, project_id: str | None) -> Principal:
        """The session as a management caller, acting in `project_id` (default: its first
        project). 401: no such live session; 403: no CSRF token or a wrong one, or a project
        the user is not a member of."""
        if not csrf or not hmac.compare_digest(csrf, csrf_token_of(token)):
            raise Forbidden("missing or wrong X-CSRF-Token for the console session")
        view = await self.view(token)
        if not view.projects:
            raise Forbidden("you are not a member of any project")
        chosen = view.projects[0]
        if project_id:
            matches = [p for p in view.projects if p.id == project_id]
            if not matches:
                raise Forbidden("you are not a member of that project")
            chosen = matches[0]
        return Principal(0, view.user, view.user_id, chosen.id, True, session=True)

    async def sign_out(self, token: str, *, csrf: str | None, request_id: str) -> None:
        if not csrf or not hmac.compare_digest(csrf, csrf_token_of(token)):
            raise Forbidden("missing or wrong X-CSRF-Token for the console session")
        view = await self.view(token)
        async with self._db.write() as conn:
            if await sessions.delete_session(conn, digest_of(token)):
                await audit.append(
                    conn,
                    Actor("session", view.user, view.user_id, request_id),
                    action="console.sign_out",
                    target=f"user/{view.user}",
                    project_id=None,
                    now_ms=self._now_ms(),
                )
