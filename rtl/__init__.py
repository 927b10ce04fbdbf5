"""Amaranth RTL of the SpinBayes digital periphery (docs/HARDWARE.md, docs/ARCHITECTURE.md)."""
