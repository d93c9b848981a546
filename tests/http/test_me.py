from __future__ import annotations

import httpx

from tests.http.conftest import bearer
from tests.support.world import World


async def test_me_names_the_keys_user_project_and_role(
    world: World, api: httpx.AsyncClient
) -> None:
    ada = await world.member("ada", "p1", role="admin")
    bob = await world.member("bob", "p1", role="member")
    mine = await api.get("/v1/manage/me", headers=bearer(ada.management_key))
    assert mine.status_code == 200
    assert mine.json() == {
        "user_id": ada.user_id,
        "user": "ada",
        "project_id": ada.project_id,
        "project": "p1",
        "role": "admin",
        "key_name": "p1-mgmt",
        "is_management_key": True,
    }
    theirs = (await api.get("/v1/manage/me", headers=bearer(bob.management_key))).json()
    assert (theirs["user"], theirs["role"]) == ("bob", "member")


async def test_me_needs_a_management_key(world: World, api: httpx.AsyncClient) -> None:
    ada = await world.member("ada", "p1")
    inference = await api.get("/v1/manage/me", headers=bearer(ada.inference_key))
    assert inference.status_code == 403
    assert inference.json() == {"error": "the API key is not a management key"}
    assert (await api.get("/v1/manage/me")).status_code == 401
