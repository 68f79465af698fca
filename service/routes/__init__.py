"""Routers, one per concern: detect, offsets, health (healthz/readyz/metrics), web page."""
