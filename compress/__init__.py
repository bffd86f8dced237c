"""lert-compress: distil, prune and quantize Chinese LERT models; report size against accuracy."""

import os

# PyTorch is the framework here. TensorFlow (the optional tf extra, used only to read LERT's
# original checkpoints) must not be imported behind our back by transformers or optimum.
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("USE_TORCH", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
