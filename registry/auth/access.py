"""Scopes (`repository:NAME:pull,push`), grants on name patterns, and what they allow."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

ACTIONS = frozenset({"pull", "push", "delete"})
ANONYMOUS = "anonymous"
# What an account may be called: logins under any other name are refused without a lookup.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,254}")


def valid_account_name(name: str) -> bool:
    """A name an account may have (`anonymous` is the principal of requests without one)."""
    return bool(ACCOUNT_NAME.fullmatch(name)) and name != ANONYMOUS


@dataclass(frozen=True, slots=True)
class Access:
    """One resource and the actions wanted (or granted) on it."""

    type: str
    name: str
    actions: frozenset[str]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def to_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Parse scope strings (each may hold several, space-separated); malformed ones are ignored,
    as Distribution does, since clients send scopes for resources they merely might use."""
    found = []
    for value in values:
        for item in value.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name and actions:
                found.append(Access(kind, name, frozenset(a for a in actions.split(",") if a)))
    return found


def parse_actions(text: str) -> frozenset[str]:
    actions = frozenset(a.strip() for a in text.split(",") if a.strip())
    unknown = actions - ACTIONS - {"*"}
    if unknown or not actions:
        raise ValueError(f"actions must be a comma list of {', '.join(sorted(ACTIONS))} (got {text!r})")
    return ACTIONS if "*" in actions else actions


def matches(pattern: str, repository: str) -> bool:
    """An exact name, or a glob where `*` spans slashes (`team/*` covers `team/a/b`)."""
    return pattern == repository or fnmatchcase(repository, pattern)


class Grants:
    """The grants of one principal, answering "may it do X to repository Y"."""

    def __init__(self, rows: Iterable[tuple[str, frozenset[str]]]):
        self.rows = list(rows)

    def actions(self, repository: str) -> frozenset[str]:
        allowed: set[str] = set()
        for pattern, actions in self.rows:
            if matches(pattern, repository):
                allowed |= actions
        return frozenset(allowed)

    def allows(self, repository: str, action: str) -> bool:
        return action in self.actions(repository)

    def grant(self, wanted: list[Access]) -> list[Access]:
        """The intersection of requested scopes with these grants (what a token may carry)."""
        granted = []
        for access in wanted:
            if access.type == "repository":
                actions = access.actions & self.actions(access.name)
                if "*" in access.actions:
                    actions = self.actions(access.name)
                if actions:
                    granted.append(Access("repository", access.name, actions))
            elif access.type == "registry" and access.name == "catalog":
                granted.append(Access("registry", "catalog", frozenset({"*"})))
        return granted
