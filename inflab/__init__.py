"""inflab: a terminal lab for ML inference on AWS accelerators."""

__version__ = "0.1.0"
