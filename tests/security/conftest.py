"""The security suite reuses the registry fixtures: `registry_process`, `postgres_url`, `s3_endpoint` come
from tests/conftest.py; the e2e fixtures (a private dockerd, podman) are imported by the tests that need them.
`api` and `server` come from tests/registry/conftest.py."""

from __future__ import annotations

from tests.registry.conftest import api, server  # noqa: F401  (fixtures shared with the registry's tests)
