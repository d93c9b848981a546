"""Who makes a change: the actor every state-changing service takes (docs/audit.md)."""

from __future__ import annotations

from tollway.frozen import frozen

ACTOR_KINDS = ("key", "session", "cli")


@frozen
class Actor:
    """`kind` "key": a management key (`name` is the key's name); "session": a console
    session signed in through OIDC (`name` is the user's name); "cli": the operator at the
    `tollway` command (`name` "cli"). `user_id` is the acting user, when there is one;
    `request_id` the request that made the change (the Management API and the console)."""

    kind: str
    name: str
    user_id: str | None = None
    request_id: str | None = None


CLI = Actor("cli", "cli")
