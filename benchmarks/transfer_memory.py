"""Peak memory of preparing and reading a distillation transfer set, at several sizes.

Each size runs in a fresh process: write N unlabelled texts to a file, read and tokenise them
(Arrow on disk), let a small teacher label every row once, then read one epoch's worth of
transfer batches (8,000 rows, as with ratio 1.0 on an 8,000-row train split). Printed side by
side: rows, peak resident MB (VmHWM, Linux) and seconds.

    python benchmarks/transfer_memory.py --rows 10000 200000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自"
    "二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
    "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变"
    "条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
    "几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器"
    "压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安"
    "场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集"
    "温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连"
    "断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精"
    "值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属"
    "圆包火住调满县局照参红细引听该铁价严龙飞"
)


def measure(rows: int, per_epoch: int) -> dict:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from compress.models import char_tokenizer
    from compress.scoring import torch_forward
    from compress.transfer import TransferConfig, build_transfer, epoch_batches, label_with_teacher

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unlabelled.txt"
        with path.open("w", encoding="utf-8") as fh:
            for _ in range(rows):
                fh.write("".join(rng.choice(CHARS) for _ in range(rng.randint(20, 80))) + "\n")
        tokenizer = char_tokenizer([CHARS], 1, Path(tmp) / "vocab")
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            num_labels=2,
        )
        torch.manual_seed(0)
        teacher = BertForSequenceClassification(config).eval()
        Path("/proc/self/clear_refs").write_text("5")  # peak from here on
        started = time.perf_counter()
        data = build_transfer(TransferConfig(files=[path]), tokenizer, 128, Path(tmp) / "work")
        data = label_with_teacher(data, torch_forward(teacher), 64, Path(tmp) / "work")
        served = sum(len(b[0]["input_ids"]) for b in epoch_batches(data, per_epoch, 32, 0, 1))
        seconds = time.perf_counter() - started
    status = {
        line.split(":")[0]: int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith(("VmHWM:", "RssAnon:", "RssFile:"))
    }
    return {
        "rows": rows,
        "served": served,
        "peak_mb": round(status["VmHWM"]),
        "anon_mb": round(status["RssAnon"]),
        "file_mb": round(status["RssFile"]),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[10_000, 200_000])
    parser.add_argument("--per-epoch", type=int, default=8_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.per_epoch)))
        return
    results = []
    for rows in args.rows:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(rows), "--per-epoch", str(args.per_epoch)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "| transfer rows | rows read in one epoch | peak resident MB | at the end: anonymous MB "
        "| at the end: file-backed MB (memory-mapped Arrow, libraries) | seconds |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['served']:,} | {r['peak_mb']:,} | {r['anon_mb']:,} "
            f"| {r['file_mb']:,} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()
