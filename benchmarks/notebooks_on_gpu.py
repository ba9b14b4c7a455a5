"""Run notebooks 04 and 05 with papermill in the full profile on a Phi-2-SHAPED random-weight model.

    python benchmarks/notebooks_on_gpu.py            # on a CUDA machine without Hub access
    python benchmarks/notebooks_on_gpu.py --t4       # also a pass emulating a T4 (no bf16: fp16 everywhere)
    python benchmarks/notebooks_on_gpu.py --dry-run  # the same plumbing on a CPU, smoke profile, tiny model

The notebooks run unchanged; only their parameters differ (``utils.notebooks.run_notebook``, papermill):
MODEL_ID points at a random Phi-2-shaped checkpoint (``utils.models.tiny_phi.build_random_phi2``), the data
at the course's own QA set, and ``QUALITY_ASSERTS=False`` reports the learning checks (loss, F1,
perplexity) instead of asserting them: a random 2.7 B model does not learn our 224 questions in 30 steps.
Everything else (4-bit loading, LoRA, memory measurements, fp16 guard, Trainer, checkpoints, adapter
saving, evaluation, merge check and its assert, timing) runs as a learner runs it. The machine needs
papermill and ipykernel (carry their wheels to a GPU machine that lacks them). Results:
<out>/run_<mode>/notebooks/*.ipynb, <out>/run_<mode>/0{4,5}_*.json and <out>/wall.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from utils.models.architectures import ARCHITECTURES  # noqa: E402
from utils.notebooks import NOTEBOOK_DIR, run_notebook  # noqa: E402

DATA = [REPO / "data/qa/train.json", REPO / "data/qa/validation.json"]
T4_EMULATION = REPO / "benchmarks" / "t4_emulation"  # a sitecustomize that hides bf16 from torch


def parameters(model: str, run_dir: Path) -> dict[str, dict]:
    """Each notebook's parameters for a random-weight run (the rest are the full profile's); 04 saves its adapter
    where 05 reads it (05's default names the Hub model, not the random checkpoint)."""
    adapter = str(run_dir / "phi2-random-qa-adapter")
    return {
        "04_phi2_qlora_training": {"MODEL_ID": model, "TARGET_MODULES": list(ARCHITECTURES["phi"].lora_targets),
                                   "DATASET": str(DATA[0]), "TRAIN_SIZE": 0, "MAX_STEPS": 30,
                                   "SETTINGS": {"save_steps": 15}, "F1_QUESTIONS": 32, "QUALITY_ASSERTS": False,
                                   "ADAPTER_DIR": adapter},
        "05_phi2_qa_evaluation": {"EVAL_DATASET": str(DATA[1]), "EVAL_SIZE": 56, "QUALITY_ASSERTS": False,
                                  "ADAPTER": adapter},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="/tmp/phi2", help="where the random Phi-2-shaped checkpoint goes")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/notebooks_on_gpu"))
    parser.add_argument("--t4", action="store_true", help="also run a T4-emulating fp16 pass")
    parser.add_argument("--dry-run", action="store_true", help="CPU, smoke profile, a tiny Phi: checks the plumbing")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from utils.models import tiny_phi
    from utils.qa.data import qa_texts

    if not (Path(args.model) / "config.json").is_file():
        if args.dry_run:
            tiny_phi.ensure_tiny_phi(args.model, qa_texts(*DATA))
        else:
            tiny_phi.build_random_phi2(args.model, qa_texts(*DATA))
    wall = {}
    for mode in ["bf16", "fp16"] if args.t4 else ["bf16"]:
        pythonpath = [os.environ.get("PYTHONPATH"), str(REPO), str(T4_EMULATION) if mode == "fp16" else None]
        os.environ.update({"QLORA_PROFILE": "smoke" if args.dry_run else "full", "PYTHONUNBUFFERED": "1",
                           "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))})
        for name, params in parameters(args.model, out / f"run_{mode}").items():
            start = time.perf_counter()
            try:
                run_notebook(NOTEBOOK_DIR / f"{name}.ipynb", out / f"run_{mode}", params)
                status = "ok"
            except Exception as err:  # keep going: the executed notebook shows the failing cell
                status = f"{type(err).__name__}: {str(err)[-500:]}"
            wall[f"{name[:2]}_{mode}"] = {"seconds": round(time.perf_counter() - start), "status": status}
            print(name, mode, wall[f"{name[:2]}_{mode}"], flush=True)
    (out / "wall.json").write_text(json.dumps(wall, indent=1))


if __name__ == "__main__":
    main()
