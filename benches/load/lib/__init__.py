"""Shared parts of the load tools: `compare` (runs), `render` (reports), `windows` (latency
windows) and `scripts/build-dist` (its training load). Standard library only."""
