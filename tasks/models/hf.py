"""The `hf` backend: any causal LM that transformers loads (a hub id or a local directory).

Log-likelihoods follow lm-evaluation-harness: the continuation's tokens are those of
tokenize(context + continuation) past tokenize(context); inputs longer than max_length lose
their left end. Requests are sorted by length and batched with right padding. When every
continuation of a request is one token (MMLU's " A".." D"), one forward pass of the context
scores them all. Only the positions that are scored go through the output projection.

`device: auto` is CUDA when present, else the CPU; `dtype: auto` is bfloat16 on a GPU and float32
on the CPU; `batch_size: auto` is sized from free GPU memory (16 on the CPU). A batch that runs out
of GPU memory is halved and retried, and later batches keep the smaller size: a run never fails for
a batch that a smaller one would have done. On the CPU nothing of this changes a number.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from helmflow.specs.schema import ModelSpec
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import Backend, Completion, ModelError, ModelInfo
from helmflow.tasks.models.hf_prefix import score_groups, token_budget_batches
from helmflow.tasks.models.shared_prefix import prefix_groups

Progress = Callable[[int, int], None]  # (done, total)

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
CPU_BATCH_SIZE = 16  # batch_size auto on the CPU: the spec's default
# batch_size auto on a GPU: the share of free memory a forward pass may plan on, and the prompt length
# (tokens) a row is assumed to have when turning a token budget into rows.
GPU_MEMORY_SHARE = 0.5
TYPICAL_ROW_TOKENS = 512
# A prefix group whose prefix and members' own tokens together are at most this long is packed into one
# row (hf_prefix.PackedRow); a longer one (MMLU 5-shot: ~500 tokens of exemplars shared by a whole subject) has
# its prefix's key/value cache computed once and copied to its members' rows.
PACKED_ROW_TOKENS = 512

Row = TypeVar("Row")
Out = TypeVar("Out")


def resolve_device(device: str, torch: Any) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return DTYPES[dtype]


def is_out_of_memory(exc: BaseException, torch: Any) -> bool:
    # Older torch and some kernels raise a plain RuntimeError whose message says so.
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def gpu_token_budget(free_bytes: int, config: Any, bytes_per_value: int) -> int:
    """Tokens one forward pass can hold in GPU_MEMORY_SHARE of the free memory: per token the KV
    cache of every layer plus the widest layer's activations (a rough bound; OOM halving backs it)."""
    hidden = int(config.hidden_size)
    layers = int(config.num_hidden_layers)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_width = hidden * int(getattr(config, "num_key_value_heads", heads) or heads) // heads
    widest = int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden)
    per_token = bytes_per_value * (2 * layers * kv_width + 4 * hidden + 2 * widest)
    return int(GPU_MEMORY_SHARE * free_bytes / per_token)


@dataclass
class _Sequence:
    """One forward-pass row: input ids and, per scored continuation, its target tokens."""

    request_index: int
    input_ids: list[int]
    # (continuation index, first scored position, target token ids)
    targets: list[tuple[int, int, list[int]]] = field(default_factory=list)


def local_fingerprint(directory: Path) -> str:
    """Content hash of a model folder: config and tokenizer in full, weights by size and both ends."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        digest.update(path.name.encode())
        if path.suffix in (".json", ".jinja", ".model", ".txt"):
            digest.update(path.read_bytes())
        else:
            size = path.stat().st_size
            digest.update(str(size).encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
                handle.seek(max(0, size - (1 << 20)))
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class HFModel:
    def __init__(self, spec: ModelSpec, path: str | None = None, fingerprint: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.spec = spec
        target = path or spec.path
        assert target is not None
        self.torch = torch
        self.device = resolve_device(spec.device, torch)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(target, revision=spec.revision)
            self.model = AutoModelForCausalLM.from_pretrained(
                target, revision=spec.revision, dtype=getattr(torch, self.dtype)
            )
        except OSError as exc:
            raise ModelError(
                f"model '{spec.name}': could not load '{target}' with transformers "
                f"(a hub id needs internet; a local path needs config.json and weights): {exc}"
            ) from exc
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # The first forward pass pays one-off set-up costs; keep them out of measured latencies.
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([[self.tokenizer.pad_token_id] * 8], device=self.device))
        self.batch_size, self.max_batch_tokens = self._batch_limits()
        self._stop_criteria_cache: dict[tuple[str, ...], Any] = {}
        self.packed_row_tokens = PACKED_ROW_TOKENS
        if fingerprint is None:
            commit = getattr(self.model.config, "_commit_hash", None)
            local = Path(target)
            fingerprint = local_fingerprint(local) if local.is_dir() else f"{target}@{commit or 'unknown'}"
        self.info = ModelInfo(
            name=spec.name,
            backend=spec.backend,
            fingerprint=fingerprint,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            num_threads=torch.get_num_threads(),
            num_parameters=sum(p.numel() for p in self.model.parameters()),
        )

    def _batch_limits(self) -> tuple[int, int]:
        """Rows per batch and padded tokens per multiple-choice forward pass."""
        if self.spec.batch_size != "auto":
            return self.spec.batch_size, self.spec.max_batch_tokens
        if not self.device.startswith("cuda"):
            return CPU_BATCH_SIZE, self.spec.max_batch_tokens
        free, _ = self.torch.cuda.mem_get_info(self.torch.device(self.device))
        bytes_per_value = self.torch.finfo(getattr(self.torch, self.dtype)).bits // 8
        tokens = gpu_token_budget(free, self.model.config, bytes_per_value)
        return min(1024, max(1, tokens // TYPICAL_ROW_TOKENS)), min(1_048_576, max(16, tokens))

    def _fitting(self, run: Callable[[list[Row]], list[Out]], batch: list[Row]) -> list[Out]:
        """run(batch) in pieces of at most batch_size rows; a piece that runs out of GPU memory is
        halved and retried, and batch_size shrinks with it so later batches do not fail again."""
        if len(batch) > self.batch_size:
            pieces = [batch[i : i + self.batch_size] for i in range(0, len(batch), self.batch_size)]
            return [out for piece in pieces for out in self._fitting(run, piece)]
        try:
            return run(batch)
        except Exception as exc:
            if not is_out_of_memory(exc, self.torch):
                raise
            if len(batch) == 1:
                raise ModelError(
                    f"model '{self.spec.name}': one row does not fit in {self.device} memory; lower max_length"
                ) from exc
        # Out of the except block: the failed pass's tensors (held by the traceback) can be freed now.
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()
        self.batch_size = max(1, len(batch) // 2)
        return self._fitting(run, batch)

    # -- tokenisation -------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _sequences(self, index: int, request: Request) -> list[_Sequence]:
        # As lm-evaluation-harness does: trailing spaces of the prompt belong to the continuation,
        # so "A: " + "yes" is scored as "A:" + " yes" (one natural token, not a lone space).
        prompt = request.prompt.rstrip()
        moved = request.prompt[len(prompt) :]
        context = self._encode(prompt)
        splits = []
        for cont in request.continuations:
            whole = self._encode(prompt + moved + cont)
            # Tokens may merge across the boundary; the continuation is what follows the context's length.
            splits.append((whole[: len(context)], whole[len(context) :]))
        limit = self.spec.max_length
        if all(len(c) == 1 and ctx == context for ctx, c in splits) and context:
            ctx = context[-limit:]
            seq = _Sequence(index, ctx)
            seq.targets = [(k, len(ctx) - 1, c) for k, (_, c) in enumerate(splits)]
            return [seq]
        sequences = []
        for k, (ctx, cont) in enumerate(splits):
            ids = (ctx + cont)[-(limit + 1) :]
            first = len(ids) - len(cont) - 1
            sequences.append(_Sequence(index, ids[:-1], [(k, first, cont)]))
        return sequences

    # -- forward -------------------------------------------------------------------------------

    def _scored_logprobs(self, batch: list[_Sequence]) -> list[list[float]]:
        """For each sequence, the summed log-prob of each target (in the order of its targets).

        No attention mask: rows are right-padded, so under causal attention every real token sees
        only real tokens before it, and a pad changes nothing that is scored. (lm-evaluation-harness
        passes none either.) Without a mask, attention runs as plain causal attention, its fastest kernel.
        """
        torch = self.torch
        width = max(len(s.input_ids) for s in batch)
        ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        rows, cols, owners = [], [], []
        for b, seq in enumerate(batch):
            ids[b, : len(seq.input_ids)] = torch.tensor(seq.input_ids)
            for t, (_, first, tokens) in enumerate(seq.targets):
                for j in range(len(tokens)):
                    rows.append(b)
                    cols.append(first + j)
                    owners.append((b, t, tokens[j]))
        device = self.device
        with torch.inference_mode():
            decoder = getattr(self.model, "get_decoder", lambda: None)()
            head = self.model.get_output_embeddings()
            if decoder is not None and head is not None:
                hidden = decoder(input_ids=ids.to(device)).last_hidden_state
                logits = head(hidden[torch.tensor(rows), torch.tensor(cols)])
            else:
                logits = self.model(input_ids=ids.to(device)).logits
                logits = logits[torch.tensor(rows), torch.tensor(cols)]
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        sums = [[0.0] * len(seq.targets) for seq in batch]
        for r, (b, t, token) in enumerate(owners):
            sums[b][t] += float(logprobs[r, token])
        return sums

    def _can_share_prefixes(self) -> bool:
        decoder = getattr(self.model, "get_decoder", lambda: None)()
        return bool(self.spec.share_prefixes and decoder is not None and self.model.get_output_embeddings() is not None)

    def loglikelihood(self, requests: list[Request], progress: Progress | None = None) -> list[Completion]:
        out = [Completion(request_id=r.id) for r in requests]
        sequences: list[_Sequence] = []
        for i, request in enumerate(requests):
            seqs = self._sequences(i, request)
            sequences.extend(seqs)
            out[i].logprobs = [0.0] * len(request.continuations)
            out[i].continuation_tokens = [0] * len(request.continuations)
            for seq in seqs:
                for k, _, tokens in seq.targets:
                    out[i].continuation_tokens[k] = len(tokens)
            out[i].prompt_tokens = len(seqs[0].input_ids) - (len(seqs[0].targets[0][2]) - 1)
        done = 0

        def record(batch: list[_Sequence], sums: list[list[float]], elapsed: float) -> None:
            nonlocal done
            for seq, seq_sums in zip(batch, sums, strict=True):
                completion = out[seq.request_index]
                for (k, _, _), value in zip(seq.targets, seq_sums, strict=True):
                    completion.logprobs[k] = value
                completion.latency_s += elapsed / len(batch)
                completion.forward_s += elapsed / len(batch)
                completion.batch_size = max(completion.batch_size, len(batch))
            done += len(batch)
            if progress:
                progress(done, len(sequences))

        groups = []
        if self._can_share_prefixes():
            groups = prefix_groups([s.input_ids for s in sequences], [min(t[1] for t in s.targets) for s in sequences])
        grouped = {m for group in groups for m in group.members}
        # Tokens computed per sequence: its own, plus an equal share of its group's prefix computed once.
        computed = [float(len(s.input_ids)) for s in sequences]
        for group in groups:
            for m in group.members:
                computed[m] -= group.length - group.length / len(group.members)
        for seq, tokens in zip(sequences, computed, strict=True):
            out[seq.request_index].prompt_tokens_requested += len(seq.input_ids)
            out[seq.request_index].prompt_tokens_computed += tokens
        # Longest first: a batch that does not fit in memory fails at once, not at the end.
        alone = sorted((s for i, s in enumerate(sequences) if i not in grouped), key=lambda s: -len(s.input_ids))
        for batch in token_budget_batches(alone, self.batch_size, self.max_batch_tokens):
            began = time.perf_counter()
            sums = self._fitting(self._scored_logprobs, batch)
            record(batch, sums, time.perf_counter() - began)
        score_groups(self, groups, sequences, record)
        return out

    # -- generation ----------------------------------------------------------------------------

    def generate(self, requests: list[Request], progress: Progress | None = None) -> list[Completion]:
        torch = self.torch
        out = [Completion(request_id=r.id) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt))
        size = self.batch_size
        self.tokenizer.padding_side = "left"
        for start in range(0, len(order), size):
            members = order[start : start + size]
            batch = [requests[i] for i in members]
            began = time.perf_counter()
            texts = self._fitting(lambda rows: self._generate_batch(rows, torch), batch)
            elapsed = time.perf_counter() - began
            for i, (text, logprobs, n_prompt, produced) in zip(members, texts, strict=True):
                out[i].text, out[i].logprobs, out[i].generated_tokens = text, logprobs, produced
                out[i].prompt_tokens, out[i].output_tokens = n_prompt, len(logprobs)
                out[i].prompt_tokens_requested, out[i].prompt_tokens_computed = n_prompt, float(n_prompt)
                out[i].latency_s = out[i].forward_s = elapsed / len(batch)
                out[i].batch_size = len(batch)
            if progress:
                progress(start + len(batch), len(order))
        return out

    def _stop_criteria(self, stops: tuple[str, ...]) -> Any:
        """A stopping criterion for these stop strings, built once: building one reads and embeds the
        whole vocabulary (about 0.1 s per batch on the CPU, for every batch of a run otherwise)."""
        from transformers import StoppingCriteriaList, StopStringCriteria

        if stops not in self._stop_criteria_cache:
            self._stop_criteria_cache[stops] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(stops))])
        return self._stop_criteria_cache[stops]

    def _generate_batch(self, batch: list[Request], torch: Any) -> list[tuple[str, list[float], int, int]]:
        encoded = self.tokenizer(
            [r.prompt for r in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        max_tokens = max(r.max_tokens for r in batch)
        # A row ends inside generate() at its stop sequence (or end-of-text), and the batch ends when every
        # row has: greedy tokens before the stop are the same as running to max_tokens and cutting after.
        stops = {tuple(s for s in r.stop if s) for r in batch}
        early = {"stopping_criteria": self._stop_criteria(next(iter(stops)))} if len(stops) == 1 and any(stops) else {}
        with torch.inference_mode():
            result = self.model.generate(
                **encoded,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,
                **early,
            )
            scores = self.model.compute_transition_scores(result.sequences, result.scores, normalize_logits=True)
        width = encoded["input_ids"].shape[1]
        results = []
        for b, request in enumerate(batch):
            generated = result.sequences[b, width:].tolist()
            token_logprobs = scores[b].tolist()
            kept: list[int] = []
            produced = 0
            for token in generated[: request.max_tokens]:
                produced += 1
                if token == self.tokenizer.eos_token_id:
                    break
                kept.append(token)
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            cut = min((text.find(s) for s in request.stop if s and s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
                # Count only the tokens that produced the kept text.
                n = next(
                    (
                        j
                        for j in range(1, len(kept) + 1)
                        if len(self.tokenizer.decode(kept[:j], skip_special_tokens=True)) >= cut
                    ),
                    len(kept),
                )
                kept = kept[:n]
            n_prompt = int(encoded["attention_mask"][b].sum())
            results.append((text, token_logprobs[: len(kept)], n_prompt, produced))
        return results


def fingerprint(spec: ModelSpec) -> str:
    """A local directory's file hashes, or a hub id's current revision (without loading weights)."""
    assert spec.path is not None
    if Path(spec.path).is_dir():
        return local_fingerprint(Path(spec.path))
    try:  # a hub id: its current revision names the weights
        from huggingface_hub import model_info

        return f"{spec.path}@{model_info(spec.path, revision=spec.revision).sha}"
    except Exception:
        return f"{spec.path}@unknown"


BACKEND = Backend(load=HFModel, fingerprint=fingerprint)
