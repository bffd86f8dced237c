"""Shared command-line plumbing: logging and user-facing errors without tracebacks."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from compress.errors import CompressError


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in (
        "textbrewer",
        "Distillation",
        "transformers",
        "datasets",
        "urllib3",
        "matplotlib",
        "httpx",
        "optimum",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main_guard(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except CompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished steps are kept; run again to resume", file=sys.stderr)
        return 130
