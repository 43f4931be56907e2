"""The runtime: system calls in named steps, no policy."""
