"""Failed logins counted per account and per address, across API processes (Redis).

An account (any e-mail, known or not, so a lockout says nothing about who has an account)
is locked for `FIXGATE_LOGIN_LOCKOUT_S` after `FIXGATE_LOGIN_MAX_FAILURES` failures in a
row; an address after `FIXGATE_LOGIN_MAX_FAILURES_PER_ADDRESS` failures within that time,
whatever accounts it tried (password spraying). A successful login clears its account's
count, not its address's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from api.errors import ApiError
from gateway.redis_link import AnyRedis


@dataclass(frozen=True, slots=True)
class Lockout:
    client: AnyRedis
    prefix: str
    max_account: int
    max_address: int
    window_s: int

    def _keys(self, email: str, address: str) -> tuple[str, str]:
        # Hashed: the keys name no e-mail address in Redis.
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        return (f"{self.prefix}loginfail:account:{account}",
                f"{self.prefix}loginfail:address:{address}")  # fmt: skip

    async def check(self, email: str, address: str) -> None:
        """429 with Retry-After while the account or the address is locked."""
        account, by_address = self._keys(email, address)
        pipe = self.client.pipeline(transaction=False)
        pipe.get(account)
        pipe.ttl(account)
        pipe.get(by_address)
        pipe.ttl(by_address)
        account_n, account_ttl, address_n, address_ttl = await pipe.execute()
        waits = []
        if account_n is not None and int(account_n) >= self.max_account:
            waits.append(int(account_ttl))
        if address_n is not None and int(address_n) >= self.max_address:
            waits.append(int(address_ttl))
        if waits:
            retry = max(1, *waits)
            raise ApiError(
                429,
                f"Too many failed logins: locked for {retry} s more",
                headers={"Retry-After": str(retry)},
            )

    async def failed(self, email: str, address: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key in self._keys(email, address):
            pipe.incr(key)
            pipe.expire(key, self.window_s, nx=True)
        await pipe.execute()

    async def succeeded(self, email: str, address: str) -> None:
        await self.client.delete(self._keys(email, address)[0])
