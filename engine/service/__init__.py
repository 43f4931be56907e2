"""The services: rules and state on disk, one owner and one lock per kind of state."""
