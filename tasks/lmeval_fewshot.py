"""lm-evaluation-harness's few-shot sampling (lm_eval/api/samplers.py, 0.4.13), for adapter.fewshot_order "lmeval".

lm-eval keeps one random.Random(1234) for a task (its fewshot_random_seed) and, for each evaluated doc in turn,
draws `random.sample(fewshot_docs, k)`; when its few-shot split is its test split it draws k + 1 and drops the
doc itself (ContextSampler.sample, rm_eval_doc). So the i-th evaluated instance's exemplars are the i-th draw,
and helmflow draws them the same way over the same rows in the same order, which makes the prompts byte-identical:
the run's instances in source order are lm-eval's docs under `--limit` (the first N) or `--samples` (those indices).
"first_n" (FirstNSampler) is the pool's first k rows, without the instance when it is left out.
"""

from __future__ import annotations

import random

from helmflow.specs.schema import AdapterSpec, LmevalFewshot
from helmflow.tasks.data import DataError
from helmflow.tasks.records import Instance


def _key(inst: Instance) -> tuple:
    # lm-eval compares whole docs (x != doc); the rendered fields stand for the doc (its rows are not kept).
    return (inst.input, inst.choices, inst.gold_index, inst.references)


def lmeval_exemplars(adapter: AdapterSpec, instances: list[Instance], pool: list[Instance]) -> list[list[Instance]]:
    """Each instance's exemplars, in the order the instances are given (the order lm-eval evaluates them)."""
    settings = adapter.lmeval_fewshot or LmevalFewshot()
    k = adapter.num_train
    if k == 0:
        return [[] for _ in instances]
    rng = random.Random(settings.seed)
    drawn: list[list[Instance]] = []
    for inst in instances:
        others = [p for p in pool if _key(p) != _key(inst)] if settings.exclude_eval_doc else pool
        if settings.sampler == "first_n":
            chosen = others[:k]
        else:
            extra = 1 if settings.exclude_eval_doc else 0
            if k + extra > len(pool):
                raise DataError(
                    f"{k} exemplars drawn as lm-eval draws them need {k + extra} few-shot rows in split "
                    f"'{adapter.fewshot_split}', which has {len(pool)}"
                )
            chosen = rng.sample(pool, k + extra)
            if extra:
                chosen = [p for p in chosen if _key(p) != _key(inst)][:k]
                if len(chosen) < k:  # copies of the instance were drawn: lm-eval draws again without them
                    chosen = rng.sample(others, k)
        if len(chosen) < k:
            raise DataError(f"{k} exemplars asked for, but split '{adapter.fewshot_split}' has {len(chosen)} to give")
        drawn.append(chosen)
    return drawn
