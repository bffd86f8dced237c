"""Ship a pre-trained model with the package: copy a ``pretrain`` (or ``general-distill``) step's
output into ``compress/pretrained/NAME`` with fp16 safetensors weights (half the size; they load
into float32 models), its tokenizer, model card and training record.

    python scripts/ship_pretrained.py artifacts/pretrain-mini-lert/01_mini-lert/model
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "compress" / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="the step's model directory")
    parser.add_argument("--name", default="mini-lert", help="directory under compress/pretrained")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(args.model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    SHIPPED.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=SHIPPED, prefix=f".{args.name}-"))
    model.half().save_pretrained(tmp, safe_serialization=True)
    # the config keeps float32 as the dtype models are built in: the fp16 weights are cast up
    config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
    for key in ("torch_dtype", "dtype"):
        if key in config:
            config[key] = "float32"
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(tmp)
    for name in ("README.md", "pretraining.json"):
        if (args.model_dir / name).exists():
            shutil.copy(args.model_dir / name, tmp / name)
    with (tmp / "README.md").open("a", encoding="utf-8") as card:
        card.write(
            "\n## As shipped\n\nThe weights are stored in float16 (safetensors) to halve the "
            "package; they load into float32 models as usual.\n"
        )
    tmp.chmod(0o755)  # mkdtemp makes it private; the package ships it readable
    for path in tmp.iterdir():
        path.chmod(0o644)
    out = SHIPPED / args.name
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"shipped {args.model_dir} -> {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
