"""HTTP: parse the request, call a service, build the response."""
