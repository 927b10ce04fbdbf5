"""Placeholder: filled by a later issue (see docs/ARCHITECTURE.md)."""
