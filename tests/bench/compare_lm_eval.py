"""Compare a helmflow run with lm-evaluation-harness's logged samples, instance by instance.

    python -m tests.bench.compare_lm_eval --db W.duckdb --run RUN_ID SAMPLES_DIR        # MMLU (joint)
    python -m tests.bench.compare_lm_eval --db W.duckdb --run RUN_ID --separate REF.jsonl  # acc / acc_norm

SAMPLES_DIR holds lm-eval's `samples_<task>_<time>.jsonl` files (from `--log_samples`) for MMLU
subject tasks whose names end in the subject (e.g. `mmlu_abstract_algebra`), scored zero-shot
with lm-eval's standard MMLU prompt. lm-eval's doc_id is the row's index in the subject's test
split, which is the number in helmflow's instance id (`abstract_algebra-12`).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from helmflow.warehouse.store import Warehouse


def lm_eval_samples(folder: Path, subjects: set[str]) -> dict[str, dict]:
    samples = {}
    for path in sorted(folder.glob("samples_*.jsonl")):
        task = re.sub(r"_\d{4}-\d\d-\d\dT.*$", "", path.stem.removeprefix("samples_"))
        subject = next((s for s in subjects if task.endswith(s)), None)
        if subject is None:
            continue
        for line in path.open():
            sample = json.loads(line)
            loglikelihoods = [float(r[0][0]) for r in sample["resps"]]
            samples[f"{subject}-{sample['doc_id']}"] = {
                "context": sample["arguments"][0][0]
                if isinstance(sample["arguments"], list)
                else sample["arguments"]["gen_args_0"]["arg_0"],
                "loglikelihoods": loglikelihoods,
                "pred": max(range(len(loglikelihoods)), key=lambda k: loglikelihoods[k]),
                "acc": float(sample["acc"]),
            }
    return samples


def compare(db: str, run_id: str, folder: Path) -> dict[str, float]:
    rows = [
        (r["instance_id"], r["group_name"], r["prompt"], r["choice_logprobs"], r["predicted_index"], r["correct"])
        for r in Warehouse(db).scored_predictions(run_id)
    ]
    ours = {r[0]: r for r in rows}
    theirs = lm_eval_samples(folder, {r[1] for r in rows})
    common = sorted(set(ours) & set(theirs))
    same_prompt = sum(ours[i][2] == theirs[i]["context"] for i in common)
    same_pred = sum(ours[i][4] == theirs[i]["pred"] for i in common)
    max_diff = max(abs(a - b) for i in common for a, b in zip(ours[i][3], theirs[i]["loglikelihoods"], strict=True))
    return {
        "instances_compared": len(common),
        "helmflow_only": len(set(ours) - set(theirs)),
        "identical_prompts": same_prompt,
        "identical_predictions": same_pred,
        "max_abs_loglikelihood_diff": max_diff,
        "helmflow_accuracy": sum(ours[i][5] for i in common) / len(common),
        "lm_eval_accuracy": sum(theirs[i]["acc"] for i in common) / len(common),
    }


def compare_separate(db: str, run_id: str, reference: Path, id_prefix: str = "") -> dict[str, float]:
    """A multiple_choice_separate run against lm-eval's per-doc log-likelihoods, acc and acc_norm.

    REF.jsonl: one line per doc with doc_id (= the helmflow instance id), context, continuations,
    loglikelihoods, acc and acc_norm, extracted from lm-eval's --log_samples output.
    """
    theirs = {f"{id_prefix}{r['doc_id']}": r for r in map(json.loads, reference.open())}
    rows = [
        (r["instance_id"], r["prompt"], r["choice_logprobs"], r["predicted_index"], r["acc"], r["acc_norm"])
        for r in Warehouse(db).scored_predictions(run_id)
    ]
    common = [r for r in rows if r[0] in theirs]
    diffs = [abs(a - b) for r in common for a, b in zip(r[2], theirs[r[0]]["loglikelihoods"], strict=True)]
    return {
        "instances_compared": len(common),
        "identical_prompts": sum(r[1] == theirs[r[0]]["context"] for r in common),
        "same_acc": sum(r[4] == theirs[r[0]]["acc"] for r in common),
        "same_acc_norm": sum(r[5] == theirs[r[0]]["acc_norm"] for r in common),
        "max_abs_loglikelihood_diff": max(diffs),
        "helmflow_acc": sum(r[4] for r in common) / len(common),
        "lm_eval_acc": sum(theirs[r[0]]["acc"] for r in common) / len(common),
        "helmflow_acc_norm": sum(r[5] for r in common) / len(common),
        "lm_eval_acc_norm": sum(theirs[r[0]]["acc_norm"] for r in common) / len(common),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples_dir", type=Path, nargs="?")
    parser.add_argument("--separate", type=Path, help="reference jsonl for a multiple_choice_separate task")
    parser.add_argument("--id-prefix", default="", help="helmflow instance id = prefix + lm-eval doc_id")
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", required=True)
    args = parser.parse_args()
    if args.separate:
        print(json.dumps(compare_separate(args.db, args.run, args.separate, args.id_prefix), indent=2))
    else:
        print(json.dumps(compare(args.db, args.run, args.samples_dir), indent=2))


if __name__ == "__main__":
    main()
