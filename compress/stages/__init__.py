"""The stage catalogue: every recipe stage, by name. A new stage is a module here and a line
below (README, "How it fits together")."""

from __future__ import annotations

from compress.registry import Stage
from compress.stages.baseline import baseline
from compress.stages.distill import distill
from compress.stages.export import export
from compress.stages.finetune import finetune
from compress.stages.fit import fit
from compress.stages.general_distill import general_distill
from compress.stages.pretrain import pretrain
from compress.stages.prune import prune
from compress.stages.quantize import quantize
from compress.stages.select import select

CATALOGUE: dict[str, Stage] = {
    s.name: s
    for s in (
        pretrain,
        general_distill,
        finetune,
        distill,
        baseline,
        select,
        prune,
        export,
        quantize,
        fit,
    )
}
