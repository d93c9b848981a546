"""Bearer-key authentication.

Management calls always check the key against the database, so a deleted key is refused at
once on every replica. Inference calls trust an in-process cache of keys already seen (no
round trip). A key deleted through another replica is dropped from the cache by the credit
leases' group commit, which checks the keys it charged (within one flush interval), or by
a reservation made in the database, which re-checks the key in the same statement.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict

from tollway.errors import Forbidden, Unauthorized
from tollway.frozen import frozen
from tollway.keys.secrets import KEY_PREFIX, digest_of
from tollway.keys.service import KeyService


@frozen
class Principal:
    key_id: int
    key_name: str
    user_id: str
    project_id: str
    is_management: bool
    # A console session signed in through OIDC (sso/sessions.py): no key (key_id 0), and
    # key_name is the user's name.
    session: bool = False


def bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: expected 'Bearer <api key>'")
    if not token.startswith(KEY_PREFIX) or len(token) > 256:
        raise Unauthorized("invalid API key")
    return token


class Authenticator:
    def __init__(self, keys: KeyService, *, cache_size: int) -> None:
        self._keys = keys
        self._cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()  # least recently used first
        self._digest_of_key: dict[int, str] = {}

    async def management(self, header: str | None) -> Principal:
        principal = await self._lookup(digest_of(bearer_token(header)))
        if not principal.is_management:
            raise Forbidden("the API key is not a management key")
        return principal

    async def inference(self, header: str | None) -> Principal:
        digest = digest_of(bearer_token(header))
        cached = self._cache.get(digest)
        if cached is not None:
            self._cache.move_to_end(digest)
            return cached
        return await self._lookup(digest)

    def forget(self, key_id: int) -> None:
        """Drop a key from the cache (it was deleted, or found deleted by the meter)."""
        digest = self._digest_of_key.pop(key_id, None)
        if digest is not None:
            self._cache.pop(digest, None)

    async def _lookup(self, digest: str) -> Principal:
        row = await self._keys.by_digest(digest)
        if row is None or not hmac.compare_digest(row.digest, digest):
            self._drop(digest)
            raise Unauthorized("invalid API key")
        principal = Principal(row.id, row.name, row.user_id, row.project_id, row.is_management)
        self._remember(digest, principal)
        return principal

    def _remember(self, digest: str, principal: Principal) -> None:
        if self._cache_size <= 0:
            return
        self._cache[digest] = principal
        self._digest_of_key[principal.key_id] = digest
        while len(self._cache) > self._cache_size:
            _, evicted = self._cache.popitem(last=False)
            self._digest_of_key.pop(evicted.key_id, None)

    def _drop(self, digest: str) -> None:
        principal = self._cache.pop(digest, None)
        if principal is not None:
            self._digest_of_key.pop(principal.key_id, None)
