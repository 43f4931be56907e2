"""Talking to upstream registries: the server's own small Distribution client (the server never imports client/)."""
