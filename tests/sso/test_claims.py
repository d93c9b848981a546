"""How ID token claims map to a Tollway user and to project admin grants."""

from __future__ import annotations

import pytest

from tollway.sso.oidc import challenge_of
from tollway.sso.sessions import admin_projects, csrf_token_of, user_name_from


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"preferred_username": "ada"}, "ada"),
        ({"preferred_username": "ada@acme.com"}, "ada_acme.com"),
        ({"preferred_username": "Ada Lovelace"}, "Ada_Lovelace"),
        ({"preferred_username": ""}, None),
        ({"preferred_username": 42}, None),
        ({"preferred_username": "x" * 65}, None),  # longer than a user name may be
        ({}, None),
    ],
)
def test_user_name_from_the_claim(claims: dict[str, object], expected: str | None) -> None:
    assert user_name_from(claims, "preferred_username") == expected


def test_admin_grants_only_from_prefixed_values() -> None:
    claims = {
        "groups": ["tollway-admin:research", "staff", "tollway-admin:ops", 7],
        "roles": "tollway-admin:x",
    }
    assert admin_projects(claims, "groups", "tollway-admin:") == ["ops", "research"]
    assert admin_projects(claims, "roles", "tollway-admin:") == ["x"]  # a single string
    assert admin_projects(claims, None, "tollway-admin:") == []
    assert admin_projects(claims, "missing", "tollway-admin:") == []


def test_csrf_token_is_bound_to_the_session_and_pkce_is_s256() -> None:
    assert csrf_token_of("a") != csrf_token_of("b")
    assert csrf_token_of("token-1") == csrf_token_of("token-1") != "token-1"
    # RFC 7636 appendix B's example.
    assert (
        challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
