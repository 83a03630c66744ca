"""Day 2: ``kferry doctor`` finds the field report's problems in a live cluster."""

from kferry.doctor.checks import Finding
from kferry.doctor.run import diagnose

__all__ = ["Finding", "diagnose"]
