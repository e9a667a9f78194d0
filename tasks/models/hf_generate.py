"""Greedy generation for the `hf` backend: its own decode loop, and transformers' `generate` as the fallback.

transformers' `generate` runs a batch until its last row stops: in BIG-bench object_counting most rows
end after two tokens ("3", "\n") while one runs to max_tokens, so most of a batch's decode steps compute
rows that are already done, and every batch pays its own steps. The loop here
- prefills the prompts in small right-padded batches (no attention mask: pads come after every real
  token, so causal attention keeps them out), sorted by length so little is padded;
- decodes one large group of rows together (the prefill caches side by side, pads masked), so a group
  pays each decode step once instead of once per small batch;
- drops each row from the batch the step it stops (end-of-text, a stop sequence, or max_tokens).
Every token is the argmax of the same logits at the same positions over the same tokens as in
`generate`, so the text is the same (tests/test_generation_loop.py checks it against `generate`).

A sampled request (tasks/samples.py: `sample` > 0) is a row like any other, whose token is drawn instead
(`sample_tokens`: temperature, then the top-p nucleus, then one uniform number from the row's own random
stream, seeded with the request's seed). The stream is the row's alone, so its sample does not depend on which
batch or group it lands in. transformers' `generate` samples from one global stream, so there each sampled
request runs alone, the global stream seeded with its seed for that call (and put back after).

The loop applies no logits processor, so a model whose generation config asks for one (a repetition
penalty, banned words, a minimum length...) goes through `generate`, as do models without a separate
decoder and output head.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from helmflow.tasks.adapt import Request
from helmflow.tasks.models.hf_prefix import token_budget_batches
from helmflow.tasks.models.hf_tokens import generation_prompt
from helmflow.tasks.models.shared_prefix import common_prefix_length

if TYPE_CHECKING:
    from helmflow.tasks.models.hf import HFModel

# (text, log-prob of each kept token, prompt tokens, tokens produced including the one that stopped the
# row, prompt tokens computed: fewer than the prompt's when the group shared a prefix)
Generated = tuple[str, list[float], int, int, float]

# Generation-config fields that change which token greedy decoding picks, and the value that means "off".
_PROCESSORS_OFF: dict[str, Any] = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
}


def own_loop_applies(model: HFModel, batch: list[Request]) -> bool:
    """Whether the decode loop gives what `generate` would: plain greedy decoding on a decoder and head."""
    generation = model.model.generation_config
    plain = all(getattr(generation, name, off) in (off, None) for name, off in _PROCESSORS_OFF.items())
    # A sliding-window layer's cache keeps only its window: the prefill caches could not be laid side by side.
    full = full_attention(model.model.config)
    return plain and full and model.parts is not None and all(r.prompt for r in batch)


def full_attention(config: Any) -> bool:
    """Whether every layer attends to every earlier token (no sliding window). Computing a shared prefix
    once (prefill caches laid side by side, a packed row's own mask, a prefix's copied cache) is exact
    only then: a sliding layer's cache keeps just its window, and a mask of our own would not have it."""
    if hasattr(config, "get_text_config"):  # a multimodal model's (Gemma 3's) layers are its text model's
        config = config.get_text_config()
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return all(t == "full_attention" for t in layer_types)
    return not getattr(config, "sliding_window", None)


def end_of_text_ids(model: HFModel) -> set[int]:
    """The tokens that end a row, as `generate` reads them: the generation config's (one or a list)
    and the tokenizer's."""
    configured = model.model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(model.tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


def kept_text(model: HFModel, request: Request, produced: list[int]) -> tuple[str, int]:
    """The text of the produced tokens up to end-of-text and the first stop sequence, and how many
    tokens made it (a stop sequence may end inside a token: that token counts)."""
    tokenizer = model.tokenizer
    end_ids = end_of_text_ids(model)
    kept: list[int] = []
    for token in produced[: request.max_tokens]:
        if token in end_ids:
            break
        kept.append(token)
    text = tokenizer.decode(kept, skip_special_tokens=True)
    cut = min((text.find(s) for s in request.stop if s and s in text), default=-1)
    if cut < 0:
        return text, len(kept)
    n = next(
        (j for j in range(1, len(kept) + 1) if len(tokenizer.decode(kept[:j], skip_special_tokens=True)) >= cut),
        len(kept),
    )
    return text[:cut], n


@dataclass
class _Row:
    request: Request
    prompt_ids: list[int]
    produced: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    # A sampled request's random stream: one uniform number per token, from its own seed (None: greedy).
    stream: random.Random | None = None

    def __post_init__(self) -> None:
        if self.request.sample and self.stream is None:
            self.stream = random.Random(self.request.seed)

    def add(self, token: int, logprob: float, model: HFModel, end_ids: set[int]) -> bool:
        """Append a token; True when the row is done."""
        self.produced.append(token)
        self.logprobs.append(logprob)
        if token in end_ids or len(self.produced) >= self.request.max_tokens:
            return True
        stops = [s for s in self.request.stop if s]
        if not stops:
            return False
        text = model.tokenizer.decode(self.produced, skip_special_tokens=True)
        return any(s in text for s in stops)


def greedy_generate(model: HFModel, batch: list[Request], prompts: list[list[int]] | None = None) -> list[Generated]:
    """Greedy continuations of every request (a sampled request's drawn: `next_tokens`), decoded together as
    one group (see the module's docstring). `prompts`: the requests' tokens when the caller has them already
    (`hf_tokens.generation_prompt`)."""
    torch = model.torch
    from transformers import DynamicCache

    end_ids = end_of_text_ids(model)
    prompts = prompts or [generation_prompt(model, r) for r in batch]
    rows = [_Row(r, ids) for r, ids in zip(batch, prompts, strict=True)]
    order = sorted(rows, key=lambda r: -len(r.prompt_ids))
    shared = _shared_length(rows)
    width = len(order[0].prompt_ids)
    decoder, head = model.apart()
    with torch.inference_mode():
        prefix = _prefill_shared(model, order[0].prompt_ids[:shared])
        logits, layers = _prefill(model, order, shared, prefix, width)
        mask = torch.zeros((len(order), width), dtype=torch.long)
        for b, row in enumerate(order):
            mask[b, : len(row.prompt_ids)] = 1
        positions = torch.tensor([len(row.prompt_ids) for row in order])
        live = list(range(len(order)))
        while True:
            logits = logits.float()
            tokens = next_tokens(torch, logits, [order[b] for b in live])
            logprobs = torch.log_softmax(logits, dim=-1)  # the model's own, also for a sampled token
            chosen = logprobs[torch.arange(len(live)), tokens].tolist()
            still = [k for k, b in enumerate(live) if not order[b].add(tokens[k], chosen[k], model, end_ids)]
            if not still:
                break
            if len(still) < len(live):  # drop the rows that stopped from the batch and its cache
                keep = torch.tensor(still)
                on_device = keep.to(model.device)
                layers = [(k.index_select(0, on_device), v.index_select(0, on_device)) for k, v in layers]
                mask, positions = mask[keep], positions[keep]
                tokens = [tokens[k] for k in still]
                live = [live[k] for k in still]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
            out = decoder(
                input_ids=torch.tensor(tokens)[:, None].to(model.device),
                attention_mask=mask.to(model.device),
                position_ids=positions[:, None].to(model.device),
                cache=DynamicCache(ddp_cache_data=layers, config=model.model.config),
                use_cache=True,
            )
            layers = [(layer.keys, layer.values) for layer in out.cache.layers]
            logits = head(out.last_hidden_state[:, -1])
            positions = positions + 1
    results = []
    for row in rows:
        text, n = kept_text(model, row.request, row.produced)
        n_prompt = len(row.prompt_ids)
        # The shared prefix was computed once for the group: each row's share of it counts as computed.
        computed = n_prompt - shared + shared / len(rows)
        results.append((text, row.logprobs[:n], n_prompt, len(row.produced), computed))
    return results


def next_tokens(torch: Any, logits: Any, rows: list[_Row]) -> list[int]:
    """Each row's next token: the argmax of its logits (greedy, as `generate` takes it), or drawn from them
    for a sampled row (sample_tokens, with the next number of the row's own stream)."""
    tokens = logits.argmax(dim=-1)
    sampled = [k for k, row in enumerate(rows) if row.stream is not None]
    if sampled:
        requests = [rows[k].request for k in sampled]
        uniforms = [rows[k].stream.random() for k in sampled]  # type: ignore[union-attr]
        where = torch.tensor(sampled, device=logits.device)
        drawn = sample_tokens(
            torch, logits[where], [r.temperature for r in requests], [r.top_p for r in requests], uniforms
        )
        tokens[where] = drawn
    return tokens.tolist()


def sample_tokens(
    torch: Any, logits: Any, temperatures: list[float], top_ps: list[float], uniforms: list[float]
) -> Any:
    """One token per row of `logits`, drawn by inverse transform from the row's uniform number in [0, 1):
    softmax(logits / temperature), cut to its nucleus (the most probable tokens, fewest first, whose mass
    reaches top_p: the top token always), renormalised. As transformers' TemperatureLogitsWarper then
    TopPLogitsWarper, except that ties keep the vocabulary's order (a stable sort) and the number drawn is the
    row's own (not torch's global stream), so a row draws the same token in any batch."""
    device = logits.device
    scaled = logits / torch.tensor(temperatures, device=device, dtype=logits.dtype)[:, None]
    ranked, vocabulary = torch.sort(torch.softmax(scaled, dim=-1), dim=-1, descending=True, stable=True)
    above = ranked.cumsum(dim=-1) - ranked  # the mass of the tokens ranked before each
    top_p = torch.tensor(top_ps, device=device, dtype=ranked.dtype)[:, None]
    kept = torch.where(above < top_p, ranked, torch.zeros_like(ranked))
    cumulative = kept.cumsum(dim=-1)
    target = torch.tensor(uniforms, device=device, dtype=cumulative.dtype)[:, None] * cumulative[:, -1:]
    position = torch.searchsorted(cumulative, target, right=True)  # the first whose mass passes the target
    # Rounding may put the target at the total: the last kept token with mass then, never one past it.
    position = torch.minimum(position, (kept > 0).sum(dim=-1, keepdim=True) - 1)
    return vocabulary.gather(1, position).squeeze(1)


def _shared_length(rows: list[_Row]) -> int:
    """Tokens every prompt of the group starts with (instructions, few-shot exemplars), computed once;
    each prompt keeps at least its last token, whose logits give the first generated token."""
    if len(rows) < 2:
        return 0
    ordered = sorted(r.prompt_ids for r in rows)  # the first and last share what all share
    shared = common_prefix_length(ordered[0], ordered[-1])
    return min(shared, min(len(r.prompt_ids) for r in rows) - 1)


def _prefill_shared(model: HFModel, prefix: list[int]) -> list[tuple[Any, Any]]:
    """The key/value cache of the group's shared prefix, one row: [(keys, values)] per layer."""
    if not prefix:
        return []
    out = model.apart()[0](input_ids=model.torch.tensor([prefix]).to(model.device), use_cache=True)
    return [(layer.keys, layer.values) for layer in out.cache.layers]


def _prefill(
    model: HFModel, order: list[_Row], shared: int, prefix: list[tuple[Any, Any]], width: int
) -> tuple[Any, list[tuple[Any, Any]]]:
    """Each prompt after the shared prefix, a batch at a time (right-padded, sorted longest first): the
    logits of its last token and the group's cache, every batch's widened to the longest prompt."""
    torch = model.torch
    from transformers import DynamicCache

    decoder, head = model.apart()
    logits, keys, values = [], [], []
    for part in token_budget_batches(order, model.batch_size, model.max_batch_tokens, lambda r: len(r.prompt_ids)):
        part_width = len(part[0].prompt_ids) - shared
        ids = torch.full((len(part), part_width), model.tokenizer.pad_token_id, dtype=torch.long)
        for b, row in enumerate(part):
            ids[b, : len(row.prompt_ids) - shared] = torch.tensor(row.prompt_ids[shared:])
        # No mask: a row's pads come after its last token, and every row sees the whole shared prefix.
        past = [(k.expand(len(part), -1, -1, -1), v.expand(len(part), -1, -1, -1)) for k, v in prefix]
        out = decoder(
            input_ids=ids.to(model.device),
            position_ids=torch.arange(shared, shared + part_width).expand(len(part), -1).to(model.device),
            cache=DynamicCache(ddp_cache_data=past, config=model.model.config) if past else None,
            use_cache=True,
        )
        last = torch.tensor([len(row.prompt_ids) - shared - 1 for row in part], device=model.device)
        logits.append(head(out.last_hidden_state[torch.arange(len(part), device=model.device), last]))
        grow = (0, 0, 0, width - shared - part_width)  # the pads are masked when decoding
        keys.append([torch.nn.functional.pad(layer.keys, grow) for layer in out.cache.layers])
        values.append([torch.nn.functional.pad(layer.values, grow) for layer in out.cache.layers])
    n_layers = len(keys[0])
    layers = [(torch.cat([k[i] for k in keys]), torch.cat([v[i] for v in values])) for i in range(n_layers)]
    return torch.cat(logits), layers


def stop_criteria(model: HFModel, stops: tuple[str, ...]) -> Any:
    """transformers' stopping criterion for these stop strings, built once per model: building one reads
    and embeds the whole vocabulary (about 0.1 s per batch on the CPU, for every batch of a run otherwise)."""
    from transformers import StoppingCriteriaList, StopStringCriteria

    cache = model._stop_criteria_cache
    if stops not in cache:
        cache[stops] = StoppingCriteriaList([StopStringCriteria(model.tokenizer, list(stops))])
    return cache[stops]


def transformers_generate(
    model: HFModel, batch: list[Request], prompts: list[list[int]] | None = None
) -> list[Generated]:
    """The same through transformers' `generate` (left padding; rows that stop early wait for the batch). A
    sampled request runs alone, `generate` drawing from torch's global stream seeded with the request's seed,
    so that its sample, too, does not depend on the batch (it differs from the decode loop's draw: another
    stream, and the model's own logits processors, which sent it here, apply)."""
    prompts = prompts or [generation_prompt(model, r) for r in batch]
    if not any(r.sample for r in batch):
        return _generate(model, batch, prompts)
    out: dict[int, Generated] = {}
    greedy = [i for i, r in enumerate(batch) if not r.sample]
    if greedy:
        done = _generate(model, [batch[i] for i in greedy], [prompts[i] for i in greedy])
        out.update(zip(greedy, done, strict=True))
    for i, request in enumerate(batch):
        if request.sample:
            [out[i]] = _generate(model, [request], [prompts[i]])
    return [out[i] for i in range(len(batch))]


@contextmanager
def _seeded(torch: Any, device: str, seed: int | None) -> Iterator[None]:
    """torch's global random streams seeded with `seed` inside, and put back as they were after (None: as
    they are): so a sampled `generate` call draws the same tokens whatever ran before it."""
    if seed is None:
        yield
        return
    devices = [torch.device(device)] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _generate(model: HFModel, batch: list[Request], prompts: list[list[int]]) -> list[Generated]:
    """One `generate` call: greedy over the batch, or the one sampled request it holds."""
    torch = model.torch
    sampled = batch[0] if len(batch) == 1 and batch[0].sample else None
    # top_k 0: no top-k cut beside the spec's top_p (a generation config's top_k, often 50, would add one).
    decoding: dict[str, Any] = (
        {"do_sample": True, "temperature": sampled.temperature, "top_p": sampled.top_p, "top_k": 0}
        if sampled
        else {"do_sample": False}
    )
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(batch), width), model.tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for b, ids in enumerate(prompts):
        if ids:
            input_ids[b, width - len(ids) :] = torch.tensor(ids)
            attention_mask[b, width - len(ids) :] = 1
    encoded = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    # A row ends inside generate() at its stop sequence (or end-of-text), and the batch ends when every
    # row has: greedy tokens before the stop are the same as running to max_tokens and cutting after.
    stops = {tuple(s for s in r.stop if s) for r in batch}
    early = {"stopping_criteria": stop_criteria(model, next(iter(stops)))} if len(stops) == 1 and any(stops) else {}
    with torch.inference_mode(), _seeded(torch, model.device, sampled.seed if sampled else None):
        result = model.model.generate(
            **encoded,
            max_new_tokens=max(r.max_tokens for r in batch),
            **decoding,
            pad_token_id=model.tokenizer.pad_token_id,
            output_scores=True,
            output_logits=sampled is not None,
            return_dict_in_generate=True,
            **early,
        )
        # A sampled token's log-prob is the model's own (its raw logits), as the decode loop records it, not
        # the one after temperature and top-p.
        steps = result.logits if sampled else result.scores
        scores = model.model.compute_transition_scores(result.sequences, steps, normalize_logits=True)
    results = []
    end_ids = end_of_text_ids(model)
    for b, request in enumerate(batch):
        generated = result.sequences[b, width:].tolist()
        # Tokens up to end-of-text count as produced; the pads after it do not.
        produced = next((j + 1 for j, t in enumerate(generated) if t in end_ids), len(generated))
        text, n = kept_text(model, request, generated)
        n_prompt = len(prompts[b])
        results.append((text, scores[b].tolist()[:n], n_prompt, min(produced, request.max_tokens), float(n_prompt)))
    return results
