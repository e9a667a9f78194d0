"""The registries: which model backends and which metric categories a spec may name.

A name resolves by convention, so the spec language needs nothing from the code behind it:
backend `x` is the module `helmflow.tasks.models.x` (its `BACKEND`), category `y` is the module
`helmflow.tasks.metrics.y` (its `CATEGORY`). Adding either is one new module plus one line here
(docs/adding-a-backend-or-category.md walks through both).
"""

from __future__ import annotations

BACKENDS = (
    "embedded",
    "hf",
    "openai",
)

# In the order result tables show them.
CATEGORIES = (
    "accuracy",
    "calibration",
    "robustness",
    "fairness",
    "bias",
    "toxicity",
    "efficiency",
)
