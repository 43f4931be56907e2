"""The Docker Engine API: a second front door onto the engine's services (see docs/architecture.md)."""
