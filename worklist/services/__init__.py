"""Writes: ingest, study readiness and routing, worklist actions."""
