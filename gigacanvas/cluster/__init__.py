"""Orchestration: the spec, placement, the step loop, the decode, the CLI."""
