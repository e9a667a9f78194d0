"""A prompt as a conversation: the system message, exemplar turns and the question, as lm-evaluation-harness
builds it (`ConfigurableTask.fewshot_context` with `--system_instruction`, `--apply_chat_template`,
`--fewshot_as_multiturn`), so that a model evaluated inside its chat template reads what it reads in lm-eval.

- The system message is the model's system prompt, then the scenario's instructions (joined by the few-shot
  delimiter when neither side has whitespace at the join).
- Each exemplar is a user turn (its question, up to the output prefix) and an assistant turn (its answer).
- The question is the last user turn; the chat template adds the generation prompt after it.
- Without `fewshot_as_multiturn` the exemplars and the question are one user turn: the text the plain prompt
  has after its instructions (question, target delimiter, answer, few-shot delimiter, ..., question).
- Without a template (a system prompt alone) the messages are joined as plain text, as lm-eval joins them.

The template itself is the tokenizer's (tasks/models/chat_format.py); this module only builds the messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Message = dict[str, str]  # {"role": ..., "content": ...}, as chat templates read them
# Messages -> the text the model reads, the generation prompt included (the tokenizer's template).
Render = Callable[[list[Message]], str]


def joined(prefix: str | None, suffix: str | None, delimiter: str) -> str:
    """prefix + suffix, with the delimiter between them only when neither has whitespace at the join."""
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    return prefix + suffix if prefix[-1].isspace() or suffix[0].isspace() else prefix + delimiter + suffix


@dataclass(frozen=True)
class ChatFormat:
    """How a model's prompts are made from their parts: its template (None: plain text), system prompt and
    whether exemplars are turns of their own. `fingerprint` names all three (the model fingerprint)."""

    render: Render | None
    system_prompt: str | None = None
    multiturn: bool = False
    fingerprint: str = ""

    @property
    def templated(self) -> bool:
        return self.render is not None

    def prompt(
        self,
        instructions: str,
        shots: list[tuple[str, str]],
        question: str,
        target_delimiter: str,
        fewshot_delimiter: str,
    ) -> str:
        """The prompt of `question` after the exemplars `shots` ((question, answer) pairs), each question
        already rendered up to its output prefix."""
        system = joined(self.system_prompt, instructions, fewshot_delimiter)
        if self.render is None:  # a system prompt without a template: plain text, as lm-eval joins it
            body = "".join(q + target_delimiter + a + fewshot_delimiter for q, a in shots)
            return system + body + question
        messages = [{"role": "system", "content": system}] if system else []
        if self.multiturn:
            for q, a in shots:
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            messages.append({"role": "user", "content": question})
        else:
            body = "".join(q + target_delimiter + a + fewshot_delimiter for q, a in shots)
            messages.append({"role": "user", "content": body + question})
        return self.render(messages)


__all__ = ["ChatFormat", "Message", "Render", "joined"]
