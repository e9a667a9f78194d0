"""Field templates cannot exhaust the machine.

Each hostile payload below is either refused when the spec is loaded (what `specs validate` does),
with the file, line and field named, or stopped while a row is rendered, with the row and the field
named; either way within 5 s, and without the process growing past 1 GB. The payloads run in one
child process (with a 4 GB address-space cap, so that a regression fails instead of swapping the
machine), which reports, for each, where it stopped, its message, the time it took and its peak
memory so far (VmHWM of the child's own address space: ru_maxrss would also count the parent's
peak, which Linux carries over fork and exec).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helmflow.specs.templates import MAX_FIELD_CHARS, TemplateError, value_of
from tests.conftest import REPO

# One worker runs the whole module (its fixtures are module-scoped).
pytestmark = pytest.mark.xdist_group("hostile-templates")

SECONDS = 5.0
PEAK_KB = 1024 * 1024  # 1 GB, in kB as /proc/self/status counts
ROW = {"question": "What colour is the sky?", "answer": "blue"}
ROW_NUMBER = 3


@dataclass(frozen=True)
class Payload:
    field: str  # the spec's fields.input
    stage: str  # "validate": refused when the spec loads; "render": stopped while mapping the row
    message: str  # a regular expression the message must contain after the field


PAYLOADS: dict[str, Payload] = {
    # The issue's payloads.
    "repeat a column": Payload("{{ question * 1000000000 }}", "render", "repeating a value 1,000,000,000 times"),
    "repeat a literal": Payload("{{ 'a' * 10**10 }}", "validate", "repeating a value 10,000,000,000 times"),
    # Jinja's ** is left-associative: the issue's `9 ** 9 ** 9` is 9**81 (see the test below); this is the huge one.
    "huge power": Payload("{{ 9 ** (9 ** 9) }}", "validate", "a power of about 1,228,093,894 bits"),
    "lipsum": Payload("{{ lipsum(n=10**9) }}", "validate", r"lipsum\(\) of more than 100 paragraphs"),
    "nested loops": Payload(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "render",
        "the rendered text is longer than 100,000 characters",
    ),
    # More of the same kinds.
    "nested loops that output nothing": Payload(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "render",
        # Whichever bound a loop that prints nothing meets first, by the machine's speed: time or items counted.
        "it ran longer than 2 s|it builds more than 10,000,000 characters or items in all",
    ),
    "join a repeated list": Payload("{{ ''.join(['x'] * 10**8) }}", "validate", "repeating a value 100,000,000"),
    "double a string with ~ in a loop": Payload(
        "{% set ns = namespace(s=question) %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s }}",
        "render",
        "would be 1,507,328 characters or items long",
    ),
    "double a string with + in a loop": Payload(
        "{% set ns = namespace(s=question) %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
        "{{ ns.s }}",
        "render",
        "would be 1,507,328 characters or items long",
    ),
    "square a number in a loop": Payload(
        "{% set ns = namespace(x=question|length) %}{% for i in range(100) %}{% set ns.x = ns.x * ns.x %}"
        "{% endfor %}{{ ns.x }}",
        "render",
        "a product of about",
    ),
    "% with a huge width": Payload("{{ '%0999999999d' % 1 }}", "validate", "a width of 999,999,999"),
    "% with a * width": Payload("{{ '%*d' % (10**9, 1) }}", "validate", r"a '\*' width"),
    "format with a huge width": Payload("{{ '{:>999999999}'.format(1) }}", "validate", "a width of 999,999,999"),
    "format with many fields": Payload(
        "{{ ('{}' * 1000).format(question * 1000) }}", "render", "the formatted text would be"
    ),
    "a range past the limit": Payload("{{ range(10**6)|list|length }}", "validate", "a range of more than 100,000"),
    "center filter": Payload("{{ question|center(10**9) }}", "render", "a width of 1,000,000,000"),
    "filter block": Payload("{% filter center(10**9) %}x{% endfilter %}", "render", "a width of 1,000,000,000"),
    "ljust method": Payload("{{ question.ljust(10**9) }}", "render", "a width of 1,000,000,000"),
    "a method that allocates": Payload(
        "{{ (10).to_bytes(10**9, 'big') }}", "render", r"the method \.to_bytes\(\) is not allowed"
    ),
    "replace the empty string": Payload(
        "{{ question|replace('', question * 1000) }}", "render", "longer than 100,000 characters"
    ),
    "indent": Payload("{{ ((question ~ '\\n') * 1000)|indent(10**5) }}", "render", "the indented text would be"),
    "wordwrap": Payload(
        "{{ question|wordwrap(1, wrapstring=question * 1000) }}", "render", "longer than 100,000 characters"
    ),
    "join with a long separator": Payload(
        "{{ range(100000)|map('string')|join(question * 10) }}", "render", "the joined text would be"
    ),
    "batch with fill": Payload("{{ [question]|batch(10**9, 'x')|list }}", "render", "batches of more than 100,000"),
    "sum of lists": Payload(
        "{{ ([[question] * 40] * 1000)|sum(start=[])|length }}",
        "render",
        "summing 1,000 lists of 960,000 items in all copies too much",
    ),
    "tojson indent": Payload("{{ [question]|tojson(indent=10**6) }}", "render", "a tojson indent of more than 8"),
    "map a widening filter": Payload(
        "{{ range(100000)|map('center', 99999)|list|length }}", "render", "more than 10,000,000 characters or items"
    ),
    "shared references": Payload(
        "{% set a = [question] * 1000 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}"
        "{% set c = [b, b, b, b, b, b, b, b, b, b] %}{{ c }}",
        "render",
        "characters or items long",
    ),
    "dict.fromkeys": Payload(
        "{{ dict.fromkeys(range(100000), question * 1000) }}", "render", "characters or items long"
    ),
    "loops over long strings": Payload(
        "{% for a in question * 1000 %}{% for b in question * 1000 %}{% endfor %}{% endfor %}",
        "render",
        "more than 10,000,000 characters or items in all|it ran longer than 2 s",
    ),
    "text collected in a set block": Payload(
        "{% set t %}{% for i in range(100000) %}{% for j in range(100000) %}" + "x" * 64 + "{% endfor %}"
        "{% endfor %}{% endset %}{{ t|length }}",
        "render",
        "more than 10,000,000 characters or items in all",
    ),
    "exponential macro": Payload(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(40) }}",
        "render",
        "it ran longer than 2 s|more than 10,000,000 characters or items in all",
    ),
    "endless macro recursion": Payload(
        "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "render", "RecursionError"
    ),
    "endless recursive loop": Payload(
        "{% for x in [question] recursive %}{{ loop([x, x]) }}{% endfor %}", "render", "RecursionError"
    ),
    "an expression, not a template": Payload("question * 1000000000", "render", "repeating a value 1,000,000,000"),
}

# The child: loads each payload's spec as `specs validate` does, then maps the row as the flow does.
CHILD = """
import json, resource, sys, time
from pathlib import Path

resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from helmflow.specs.loader import SpecError, load_spec
from helmflow.tasks.data import DataError, row_to_instance

folder, row_number = Path(sys.argv[1]), int(sys.argv[2])
payloads, row = json.load(sys.stdin)
for name, field in payloads.items():
    path = folder / "scenarios" / f"{len(list(folder.glob('scenarios/*')))}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "name: hostile\\nsource: {offline: {files: {test: d.jsonl}}}\\nfields:\\n  input: " + json.dumps(field) + "\\n"
    )
    stage, message, start = "validate", "", time.monotonic()
    try:
        spec = load_spec(path).spec
        stage = "render"
        row_to_instance(dict(row), spec.fields, "test", f"{folder / 'd.jsonl'} row {row_number}")
        stage = "rendered"
    except (SpecError, DataError) as exc:
        message = str(exc)
    except BaseException as exc:  # anything else is a failure of the bounds: report it
        stage, message = "crashed", f"{type(exc).__name__}: {exc}"[:500]
    seconds = time.monotonic() - start
    peak = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))
    line = {"name": name, "path": str(path), "stage": stage, "message": message, "seconds": seconds, "peak_kb": peak}
    print(json.dumps(line), flush=True)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("hostile")
    payloads = {name: p.field for name, p in PAYLOADS.items()}
    command = [sys.executable, "-c", CHILD, str(folder), str(ROW_NUMBER)]
    try:
        done = subprocess.run(
            command, input=json.dumps([payloads, ROW]), capture_output=True, text=True, cwd=REPO, timeout=300
        )
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:  # keep what it reported; the payloads after it fail below
        stdout, stderr = _text(exc.stdout), _text(exc.stderr)
    results = {line["name"]: line for line in map(json.loads, stdout.splitlines())}
    if not results:
        pytest.fail(f"the child reported nothing: {stderr[-2000:]}")
    return results


def _text(output: str | bytes | None) -> str:
    return output.decode() if isinstance(output, bytes) else output or ""


@pytest.mark.parametrize("name", PAYLOADS)
def test_a_hostile_template_is_refused_or_stopped_quickly_and_small(
    name: str, outcomes: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    payload = PAYLOADS[name]
    result = outcomes.get(name)
    assert result is not None, "the child stopped before this payload (killed, or out of time)"
    assert result["seconds"] < SECONDS
    assert result["peak_kb"] < PEAK_KB
    assert result["stage"] == payload.stage, result["message"]
    message = result["message"]
    if payload.stage == "validate":
        # The line of `fields:` in the spec file, the field, and why.
        prefix = f"{result['path']}:3: field 'fields': Value error, fields.input: template refused: "
    else:
        data = Path(result["path"]).parents[1] / "d.jsonl"
        prefix = f"{data} row {ROW_NUMBER}: fields.input: "
    assert message.startswith(prefix), message
    assert re.search(payload.message, message[len(prefix) :]), message


def test_the_issues_9_to_the_9_to_the_9_is_harmless_in_jinja() -> None:
    # Jinja's ** is left-associative: (9 ** 9) ** 9 == 9 ** 81, a 257-bit number.
    assert value_of("{{ 9 ** 9 ** 9 }}", ROW, "w") == str(9**81)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("{{ question * 4000 }}", ROW["question"] * 4000),  # 92,000 characters: under the field bound
        ("{{ '%05d' % 42 }}", "00042"),
        ("{{ '{:>8}|{}'.format(answer, 1) }}", "    blue|1"),
        ("{{ range(100000)|sum }}", str(sum(range(100000)))),
        ("{{ answer|center(12) }}", "    blue    "),
        ("{{ [answer] * 3 }}", "['blue', 'blue', 'blue']"),
        (
            "{% for c in [answer, question] %}{{ loop.index }}. {{ c }}\n{% endfor %}",
            f"1. blue\n2. {ROW['question']}\n",
        ),
        ("{{ [[1, 2], [3]]|sum(start=[]) }}", "[1, 2, 3]"),
        ("{{ 2 ** 64 }}", str(2**64)),
        ("question.split()|join('-')|upper", "WHAT-COLOUR-IS-THE-SKY?"),
    ],
)
def test_ordinary_templates_still_render(field: str, expected: str) -> None:
    assert value_of(field, ROW, "w") == expected


def test_a_field_just_over_the_bound_is_stopped_with_its_place_named() -> None:
    over = MAX_FIELD_CHARS // len(ROW["question"]) + 1
    with pytest.raises(TemplateError) as err:
        value_of(f"{{{{ question * {over} }}}}", ROW, "d.jsonl row 3: fields.input")
    why = f"the rendered text is longer than {MAX_FIELD_CHARS:,} characters"
    assert str(err.value) == f"d.jsonl row 3: fields.input: template stopped: {why}"
