"""The pull/push client: the OCI Distribution API spoken to any registry, and images on disk.

- `location`: skopeo-style names (`docker://`, `oci:`, `docker-archive:`, `local:`) opened as
  sources and targets; `copy.copy_image` moves an image between any two of them.
- `pull` / `push`: a registry as a source / target; `api`: one method per API endpoint;
  `transport`: scheme, TLS trust and retries; `auth` + `credentials`: who we are.
- `layout`: OCI image layouts, including the local store the engine runs from;
  `layout_image`: a layout as a source / target; `archive`: `docker save` tarballs.
- `cli`: the commands; `errors`: failures and their exit codes.
"""
