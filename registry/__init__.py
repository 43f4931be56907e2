"""Berth's registry server: the OCI Distribution API over a SQL index and a blob store."""
