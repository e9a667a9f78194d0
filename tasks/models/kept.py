"""The models a cluster worker process keeps loaded between the shards it is given.

A Dask or Ray worker process outlives every task and flow run it serves, so what it loaded has to
outlive them too: this cache belongs to the process, by design (`WORKER`), and is the one piece of
process-wide state the pipeline keeps. A few models are kept, most recently used last, so a suite
of several models neither reloads one per shard nor holds every one.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.models import ModelBackend, load_model


class KeptModels:
    def __init__(self, keep: int = 2, load: Callable[[ModelSpec], ModelBackend] = load_model) -> None:
        self.keep = keep
        self.load = load
        self._models: OrderedDict[str, ModelBackend] = OrderedDict()  # by model spec JSON
        self._loads: Counter[str] = Counter()  # how many times each spec was loaded here (1 is the aim)
        self._lock = threading.Lock()  # a threaded runner's tasks share one process: load each model once

    def get(self, spec: ModelSpec, before_load: Callable[[], None] = lambda: None) -> ModelBackend:
        """The model, loaded now if it is not kept (`before_load` runs first, under the lock, either way)."""
        key = spec.model_dump_json()
        with self._lock:
            before_load()
            model = self._models.pop(key, None)
            if model is None:
                model = self.load(spec)
                self._loads[key] += 1
            self._models[key] = model
            while len(self._models) > self.keep:
                self._models.popitem(last=False)
        return model

    def loads(self) -> dict[str, int]:
        return dict(self._loads)


WORKER = KeptModels()
