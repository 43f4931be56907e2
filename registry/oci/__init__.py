"""Pure OCI format knowledge: digests, media types, manifests and references.

Imports only the standard library, so the client and the engine can use it without
pulling in the server's dependencies.
"""
