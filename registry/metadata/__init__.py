"""The SQL index: names, tags, manifests, links and upload sessions."""
