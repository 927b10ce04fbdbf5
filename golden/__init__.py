"""Torch golden model of SpinBayes (see docs/ARCHITECTURE.md)."""
