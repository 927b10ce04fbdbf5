"""SpinBayes-RTL: Bayesian in-memory approximation on spintronic CiM hardware."""

__version__ = "0.1.0"
