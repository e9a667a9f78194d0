"""The `hf` backend: any causal LM that transformers loads (a hub id or a local directory).

Requests become token ids by lm-evaluation-harness's rules (hf_tokens.py: the tokenizer's BOS token,
trailing spaces moved into the continuation, the context's own tokens then the continuation's, left
truncation at max_length). Requests are sorted by length and batched with right padding. When every
continuation of a request is one token (MMLU's " A".." D"), one forward pass of the context
scores them all. Only the positions that are scored go through the output projection.
Generation is greedy, in groups of rows decoded together, each row leaving the batch when it
stops (hf_generate.py).

`device: auto` is CUDA when present, else the CPU; `dtype: auto` is bfloat16 on a GPU and float32
on the CPU; `batch_size: auto` is sized from free GPU memory (16 on the CPU). A batch that runs out
of GPU memory is halved and retried, and later batches keep the smaller size: a run never fails for
a batch that a smaller one would have done. On the CPU nothing of this changes a number.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from helmflow.specs.schema import ModelSpec, model_path_problem
from helmflow.tasks.adapt import Request
from helmflow.tasks.models.base import GENERATION_GROUP_BATCHES, Backend, Completion, ModelError, ModelInfo
from helmflow.tasks.models.chat_format import fingerprint_suffix, spec_fingerprint_suffix, template_of
from helmflow.tasks.models.hf_generate import (
    Generated,
    full_attention,
    greedy_generate,
    own_loop_applies,
    transformers_generate,
)
from helmflow.tasks.models.hf_prefix import score_groups, shareable_length, token_budget_batches
from helmflow.tasks.models.hf_targets import ScoredPositions
from helmflow.tasks.models.hf_tokens import Sequence, choice_sequences, encode, generation_prompt, prompt_prefix
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
# Generation decodes groups of GENERATION_GROUP_BATCHES batches' rows together (their prompts prefilled a
# batch at a time), and a group's key/value cache holds at most GENERATION_CACHE_BATCHES × max_batch_tokens
# tokens: a decode step costs about the same for 16 rows as for 100 on the CPU, so the fewer groups, the
# fewer steps.
GENERATION_CACHE_BATCHES = 4

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
        # A spec that reached here without find_model (a resumed run, a cluster worker) is checked too:
        # transformers would take a missing local folder for a hub id and fail with "Repo id must be ...".
        problem = model_path_problem(target)
        if problem:
            raise ModelError(f"model '{spec.name}': path: {problem}")
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
        self.prompt_prefix = prompt_prefix(self.tokenizer, spec.add_bos_token, spec.name)
        # The first forward pass pays one-off set-up costs; keep them out of measured latencies.
        with torch.inference_mode():
            probe = torch.tensor([[self.tokenizer.pad_token_id] * 8], device=self.device)
            self.parts = decoder_and_head(self.model, probe, self.model(input_ids=probe).logits)
        self.batch_size, self.max_batch_tokens = self._batch_limits()
        self.generation_rows = GENERATION_GROUP_BATCHES * self.batch_size
        self._stop_criteria_cache: dict[tuple[str, ...], Any] = {}
        self.packed_row_tokens = PACKED_ROW_TOKENS
        if fingerprint is None:
            commit = getattr(self.model.config, "_commit_hash", None)
            local = Path(target)
            fingerprint = local_fingerprint(local) if local.is_dir() else f"{target}@{commit or 'unknown'}"
        if spec.apply_chat_template or spec.system_prompt:  # the chat format is part of what the model is
            template = template_of(spec, self.tokenizer) if spec.apply_chat_template else None
            fingerprint += fingerprint_suffix(spec, template)
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

    def _fitting(self, run: Callable[[list[Row]], list[Out]], batch: list[Row], limit: str = "batch_size") -> list[Out]:
        """run(batch) in pieces of at most `limit` rows (the attribute of that name: batch_size, or
        generation_rows for generation's decode groups); a piece that runs out of GPU memory is
        halved and retried, and the limit shrinks with it so later batches do not fail again."""
        size = getattr(self, limit)
        if len(batch) > size:
            pieces = [batch[i : i + size] for i in range(0, len(batch), size)]
            return [out for piece in pieces for out in self._fitting(run, piece, limit)]
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
        setattr(self, limit, max(1, len(batch) // 2))
        return self._fitting(run, batch, limit)

    # -- tokenisation -------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return encode(self, text)

    def _sequences(self, index: int, request: Request) -> list[Sequence]:
        return choice_sequences(self, index, request)

    # -- forward -------------------------------------------------------------------------------

    def _scored_logprobs(self, batch: list[Sequence]) -> list[list[float]]:
        """For each sequence, the summed log-prob of each target (in the order of its targets).

        No attention mask: rows are right-padded, so under causal attention every real token sees
        only real tokens before it, and a pad changes nothing that is scored. (lm-evaluation-harness
        passes none either.) Without a mask, attention runs as plain causal attention, its fastest kernel.
        """
        torch = self.torch
        width = max(len(s.input_ids) for s in batch)
        ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        scored = ScoredPositions([len(seq.targets) for seq in batch])
        for b, seq in enumerate(batch):
            ids[b, : len(seq.input_ids)] = torch.tensor(seq.input_ids)
            for t, (_, first, tokens) in enumerate(seq.targets):
                scored.add(b, t, range(first, first + len(tokens)), tokens)
        with torch.inference_mode():
            if self.parts is not None:
                return scored.sums(self, self.apart()[0](input_ids=ids.to(self.device)).last_hidden_state)
            return scored.sums(self, self.model(input_ids=ids.to(self.device)).logits, are_logits=True)

    def apart(self) -> tuple[Any, Any]:
        """The decoder and the output head, on the paths that checked `parts` first (the scored positions
        through the head, shared prefixes, the decode loop)."""
        assert self.parts is not None, "the model runs whole: its decoder and head are not called apart"
        return self.parts

    def _can_share_prefixes(self) -> bool:
        return bool(self.spec.share_prefixes and self.parts is not None and full_attention(self.model.config))

    def loglikelihood(self, requests: list[Request], progress: Progress | None = None) -> list[Completion]:
        out = [Completion(request_id=r.id) for r in requests]
        sequences: list[Sequence] = []
        for i, request in enumerate(requests):
            seqs = self._sequences(i, request)
            sequences.extend(seqs)
            out[i].logprobs = [0.0] * len(request.continuations)
            out[i].continuation_tokens = [0] * len(request.continuations)
            for seq in seqs:  # a text scored in rolling windows has several sequences: their counts add up
                for k, _, tokens in seq.targets:
                    out[i].continuation_tokens[k] += len(tokens)
            out[i].prompt_tokens = len(seqs[0].input_ids) - (len(seqs[0].targets[0][2]) - 1)
        done = 0

        def record(batch: list[Sequence], sums: list[list[float]], elapsed: float) -> None:
            nonlocal done
            for seq, seq_sums in zip(batch, sums, strict=True):
                completion = out[seq.request_index]
                for (k, _, _), value in zip(seq.targets, seq_sums, strict=True):
                    completion.logprobs[k] += value
                completion.latency_s += elapsed / len(batch)
                completion.forward_s += elapsed / len(batch)
                completion.batch_size = max(completion.batch_size, len(batch))
            done += len(batch)
            if progress:
                progress(done, len(sequences))

        groups = []
        if self._can_share_prefixes():
            groups = prefix_groups([s.input_ids for s in sequences], [shareable_length(s) for s in sequences])
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
        """Greedy continuations, decoded in groups of rows sorted by prompt length (hf_generate.py)."""
        out = [Completion(request_id=r.id) for r in requests]
        prompts = [generation_prompt(self, r) for r in requests]
        lengths = [len(ids) + r.max_tokens for ids, r in zip(prompts, requests, strict=True)]
        order = sorted(range(len(requests)), key=lambda i: -lengths[i])
        # No fill bound: a group's pads cost cache memory, not compute (its prompts are prefilled a batch at a time).
        groups = token_budget_batches(
            order, self.generation_rows, GENERATION_CACHE_BATCHES * self.max_batch_tokens, lambda i: lengths[i], 0.0
        )
        done = 0
        for members in groups:
            batch = [(requests[i], prompts[i]) for i in members]
            began = time.perf_counter()
            texts = self._fitting(self._generate_batch, batch, "generation_rows")
            elapsed = time.perf_counter() - began
            for i, (text, logprobs, n_prompt, produced, computed) in zip(members, texts, strict=True):
                out[i].text, out[i].logprobs, out[i].generated_tokens = text, logprobs, produced
                out[i].prompt_tokens, out[i].output_tokens = n_prompt, len(logprobs)
                out[i].prompt_tokens_requested, out[i].prompt_tokens_computed = n_prompt, computed
                out[i].latency_s = out[i].forward_s = elapsed / len(batch)
                out[i].batch_size = len(batch)
            done += len(batch)
            if progress:
                progress(done, len(order))
        return out

    def _generate_batch(self, batch: list[tuple[Request, list[int]]]) -> list[Generated]:
        requests, prompts = [r for r, _ in batch], [ids for _, ids in batch]
        if own_loop_applies(self, requests):
            return greedy_generate(self, requests, prompts)
        return transformers_generate(self, requests, prompts)


# Config fields of models whose forward does more to the logits than the output head (Gemma 2 caps
# them, Granite divides them, Cohere multiplies them), with the value that means "nothing more".
_LOGIT_STEPS = {"final_logit_softcapping": None, "logits_scaling": 1.0, "logit_scale": 1.0}


def decoder_and_head(model: Any, probe: Any, logits: Any) -> tuple[Any, Any] | None:
    """The model's decoder and output head, when helmflow may call them apart (to send only the scored
    positions through the head, to compute shared prefixes once, in its own decode loop): the model's
    logits must be the head applied to the decoder's last hidden states and nothing more, and the decoder
    must place tokens by the position ids it is given (ALiBi models such as MPT and Bloom do not). Else
    None, and every path runs the model whole. `logits`: the model's own on `probe`, compared with the
    parts' for what the config does not say."""
    import inspect

    decoder = getattr(model, "get_decoder", lambda: None)()
    head = model.get_output_embeddings()
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if decoder is None or head is None or getattr(config, "alibi", False):
        return None
    if any(getattr(config, name, off) not in (off, None) for name, off in _LOGIT_STEPS.items()):
        return None
    if "position_ids" not in inspect.signature(decoder.forward).parameters:
        return None
    apart = head(decoder(input_ids=probe).last_hidden_state)
    if apart.shape != logits.shape or not bool((apart.float() - logits.float()).abs().max() <= 1e-4):
        return None
    return decoder, head


def fingerprint(spec: ModelSpec) -> str:
    """A local directory's file hashes, or a hub id's current revision (without loading weights), and the
    chat format when the spec asks for one."""
    return _weights_fingerprint(spec) + spec_fingerprint_suffix(spec)


def _weights_fingerprint(spec: ModelSpec) -> str:
    assert spec.path is not None
    if Path(spec.path).is_dir():
        return local_fingerprint(Path(spec.path))
    try:  # a hub id: its current revision names the weights
        from huggingface_hub import model_info

        return f"{spec.path}@{model_info(spec.path, revision=spec.revision).sha}"
    except Exception:
        return f"{spec.path}@unknown"


BACKEND = Backend(load=HFModel, fingerprint=fingerprint)
