"""gen: a labelled folder of microscopy images in, a verified synthetic data set out."""

__version__ = "0.1.0"
