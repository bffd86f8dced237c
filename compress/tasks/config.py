"""The ``task:`` block of a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TaskType = Literal["classification", "ner", "qa"]


class TaskConfig(BaseModel):
    """Which data a recipe trains and scores on, and how to read it.

    ``name`` is a registered task (``python -m compress tasks``), ``local`` for your own files
    (train/dev/test paths) or ``hub`` for a ``datasets`` id.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    type: TaskType | None = None
    max_seq_len: int = Field(128, ge=8, le=512)
    # local files (csv, tsv, jsonl for classification; conll-style char<TAB>tag for ner)
    train: Path | None = None
    dev: Path | None = None
    test: Path | None = None
    # hub datasets (a local copy of a hub repository works too: dataset: /path/to/copy)
    dataset: str | None = None
    subset: str | None = None
    revision: str | None = Field(None, description="e.g. refs/convert/parquet")
    data_files: dict[str, str] | None = Field(
        None, description="split -> file pattern inside the repository"
    )
    split_names: dict[str, str] = Field(default_factory=dict)
    # columns and labels
    columns: list[str] | None = Field(None, description="names for a CSV/TSV without header")
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    labels: list[str] | None = None
    label_map: dict[str, str] = Field(default_factory=dict)
    drop_labels: list[str] = Field(default_factory=list, description="labels marked unusable")
    keep_rows: dict[str, str] = Field(
        default_factory=dict, description="local files: keep rows whose column has this value"
    )
    on_bad_rows: Literal["error", "skip"] = "error"
    encoding: str = Field("utf-8", description="of local files, e.g. gb18030 for GBK data")
    # splitting a corpus that ships as one file, and trimming for quick runs
    dev_size: int = Field(2000, ge=1)
    test_size: int = Field(2000, ge=1)
    split_seed: int = 0
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    # extractive QA (SQuAD-style JSON): windows over the context and answer extraction; the
    # defaults are those of BERT's run_squad.py, which HFL's CMRC 2018 / DRCD baselines use
    doc_stride: int = Field(128, ge=1, description="qa: context tokens between window starts")
    max_query_len: int = Field(64, ge=1, description="qa: question tokens kept")
    n_best: int = Field(20, ge=1, description="qa: start and end candidates per window")
    max_answer_len: int = Field(30, ge=1, description="qa: longest answer, in tokens")
