"""lert-compress: distil, prune and quantize Chinese LERT models; report size against accuracy."""

__version__ = "0.1.0"
