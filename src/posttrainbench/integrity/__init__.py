"""Integrity checks over a frozen copy of what the agent left, and the verdict policy."""
