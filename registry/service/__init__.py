"""OCI rules: the upload state machine, manifest validation, links between names and bytes."""
