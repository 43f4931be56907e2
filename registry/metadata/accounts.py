"""Queries for accounts, grants, signing keys and login throttling."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Engine, case, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from registry.metadata.db import WRITE, insert_for
from registry.metadata.models import Account, Grant, LoginFailure, SigningKey

PRUNE_BATCH = 100


@dataclass(frozen=True, slots=True)
class AccountRow:
    name: str
    kind: str
    password_hash: str
    expires_at: datetime | None
    admin: bool = False


@dataclass(frozen=True, slots=True)
class GrantRow:
    principal: str
    pattern: str
    actions: frozenset[str]


@overload
def _aware(value: datetime) -> datetime: ...
@overload
def _aware(value: datetime | None) -> datetime | None: ...
def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


ACCOUNT_COLUMNS = (Account.name, Account.kind, Account.password_hash, Account.expires_at, Account.admin)


def _account(row: Any) -> AccountRow:
    return AccountRow(row.name, row.kind, row.password_hash, _aware(row.expires_at), bool(row.admin))


class Accounts:
    def __init__(self, engine: Engine):
        self.engine = engine

    def any_account(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(Account.id).limit(1)).first() is not None

    def get(self, name: str) -> AccountRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*ACCOUNT_COLUMNS).where(Account.name == name)).first()
        return None if row is None else _account(row)

    def list(self) -> list[AccountRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*ACCOUNT_COLUMNS).order_by(Account.name)).all()
        return [_account(r) for r in rows]

    def add(
        self, name: str, kind: str, password_hash: str, expires_at: datetime | None = None, admin: bool = False
    ) -> bool:
        """Create an account; False if the name is taken."""
        try:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                conn.execute(
                    insert(Account).values(
                        name=name, kind=kind, password_hash=password_hash, expires_at=expires_at, admin=admin
                    )
                )
        except IntegrityError:
            return False
        return True

    def set_password(self, name: str, password_hash: str) -> bool:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            query = update(Account).where(Account.name == name).values(password_hash=password_hash)
            return conn.execute(query).rowcount == 1

    def set_admin(self, name: str, admin: bool) -> bool:
        """Give or take the admin role of a person's account (robots never have it)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            query = update(Account).where(Account.name == name, Account.kind == "user").values(admin=admin)
            return conn.execute(query).rowcount == 1

    def remove(self, name: str) -> bool:
        """Delete an account and its grants."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(delete(Grant).where(Grant.principal == name))
            return conn.execute(delete(Account).where(Account.name == name)).rowcount == 1

    # grants ----------------------------------------------------------------------

    def grants(self, principal: str) -> builtins.list[GrantRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Grant.principal, Grant.pattern, Grant.actions).where(Grant.principal == principal)
            ).all()
        return [GrantRow(r.principal, r.pattern, frozenset(r.actions.split(","))) for r in rows]

    def all_grants(self) -> builtins.list[GrantRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Grant.principal, Grant.pattern, Grant.actions).order_by(Grant.principal, Grant.pattern)
            ).all()
        return [GrantRow(r.principal, r.pattern, frozenset(r.actions.split(","))) for r in rows]

    def grant(self, principal: str, pattern: str, actions: frozenset[str]) -> None:
        """Add actions to a principal's grant on a pattern (creating it if needed)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            current = conn.execute(
                select(Grant.actions).where(Grant.principal == principal, Grant.pattern == pattern)
            ).scalar()
            merged = ",".join(sorted(actions | (set(current.split(",")) if current else set())))
            dialect_insert = insert_for(conn)
            conn.execute(
                dialect_insert(Grant)
                .values(principal=principal, pattern=pattern, actions=merged)
                .on_conflict_do_update(index_elements=["principal", "pattern"], set_={"actions": merged})
            )

    def revoke(self, principal: str, pattern: str, actions: frozenset[str] | None) -> bool:
        """Remove some actions (or, with None, the whole grant). False if there was no grant."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            where = (Grant.principal == principal, Grant.pattern == pattern)
            current = conn.execute(select(Grant.actions).where(*where)).scalar()
            if current is None:
                return False
            remaining = set() if actions is None else set(current.split(",")) - actions
            if remaining:
                conn.execute(update(Grant).where(*where).values(actions=",".join(sorted(remaining))))
            else:
                conn.execute(delete(Grant).where(*where))
            return True

    # signing keys ----------------------------------------------------------------

    def signing_key(self, kid: str, generate: Callable[[], str]) -> str:
        """The PEM of key `kid`, created once by whichever replica asks first."""
        with self.engine.connect() as conn:
            pem = conn.execute(select(SigningKey.private_pem).where(SigningKey.kid == kid)).scalar()
        if pem is not None:
            return pem
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            dialect_insert = insert_for(conn)
            conn.execute(
                dialect_insert(SigningKey)
                .values(kid=kid, private_pem=generate())
                .on_conflict_do_nothing(index_elements=["kid"])
            )
            return conn.execute(select(SigningKey.private_pem).where(SigningKey.kid == kid)).scalar_one()

    # throttling ------------------------------------------------------------------
    # Keys are (principal, address); the count of a key whose window began before `since` is 0.

    def failures(self, keys: Sequence[tuple[str, str]], since: datetime) -> dict[tuple[str, str], int]:
        """Attempts counted against each key in the current window (one indexed read)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(LoginFailure.principal, LoginFailure.address, LoginFailure.failures).where(
                    tuple_(LoginFailure.principal, LoginFailure.address).in_(list(keys)),
                    LoginFailure.window_start >= since,
                )
            ).all()
        return {(r.principal, r.address): r.failures for r in rows}

    def reserve_attempt(self, limits: Sequence[tuple[str, str, int]], now: datetime, since: datetime) -> bool:
        """Count one attempt against every (principal, address, limit) key in one transaction;
        if any key would pass its limit, count nothing and return False.

        Callers give their keys in one order (an account's before its address's), so
        concurrent reservations on PostgreSQL wait on each other's rows without deadlocking; on
        SQLite the transaction holds the write lock. Expired rows of other addresses are pruned
        here (skipping rows other transactions hold), so the table never outgrows one window.
        """
        address = limits[0][1]
        with self.engine.connect().execution_options(**WRITE) as conn:
            with conn.begin() as transaction:
                expired = (
                    select(LoginFailure.principal, LoginFailure.address)
                    .where(LoginFailure.window_start < since, LoginFailure.address != address)
                    .limit(PRUNE_BATCH)
                    .with_for_update(skip_locked=True)
                )
                conn.execute(
                    delete(LoginFailure).where(tuple_(LoginFailure.principal, LoginFailure.address).in_(expired))
                )
                stale = LoginFailure.window_start < since
                dialect_insert = insert_for(conn)
                for principal, key_address, limit in limits:
                    count = conn.execute(
                        dialect_insert(LoginFailure)
                        .values(principal=principal, address=key_address, failures=1, window_start=now)
                        .on_conflict_do_update(
                            index_elements=["principal", "address"],
                            set_={
                                "failures": case((stale, 1), else_=LoginFailure.failures + 1),
                                "window_start": case((stale, now), else_=LoginFailure.window_start),
                            },
                        )
                        .returning(LoginFailure.failures)
                    ).scalar_one()
                    if count > limit:
                        transaction.rollback()
                        return False
        return True

    def refund_attempt(self, account_key: tuple[str, str], address_key: tuple[str, str]) -> None:
        """After a successful login: forget the account's failures from this address, and take
        back the one attempt reserved against the address."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(
                delete(LoginFailure).where(
                    LoginFailure.principal == account_key[0], LoginFailure.address == account_key[1]
                )
            )
            conn.execute(
                update(LoginFailure)
                .where(
                    LoginFailure.principal == address_key[0],
                    LoginFailure.address == address_key[1],
                    LoginFailure.failures > 0,
                )
                .values(failures=LoginFailure.failures - 1)
            )
