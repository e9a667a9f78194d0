"""A few rows of each HELM core scenario's Hub dataset, in that dataset's schema, and a writer that lays
them out as a local dataset folder `datasets.load_dataset(folder, config, split=...)` reads as it reads the
Hub repo.

Schemas: the datasets' features as their cards and loading scripts give them (cais/mmlu, google/boolq,
deepmind/narrativeqa, Rowan/hellaswag, allenai/openbookqa, truthfulqa/truthful_qa, stanfordnlp/imdb,
ought/raft's raft.py); for lighteval's copies of HELM's instances (natural_questions_helm, quac_helm,
summarization, civil_comments_helm) the columns lighteval's HELM tasks read, and for NaturalQuestions
HELM's own RawInstance fields. Layout: a repo without configs keeps `data/<split>-00000-of-00001.parquet`
(datasets infers the splits from the file names); a repo with configs has a README.md whose `configs:` block
names each config's files, as the Hub's parquet repos do; ought/raft is read at refs/convert/parquet, whose
layout is `<config>/<split>/0000.parquet`.

Rows are plain dicts so that tests/test_helm_prompts.py can use them without importing `datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Rows = dict[str, list[dict[str, Any]]]  # hub split -> rows


@dataclass(frozen=True)
class HubDataset:
    """One Hub dataset (one config of it): its rows per split and the feature types, as `datasets` names them."""

    config: str | None
    rows: Rows
    features: dict[str, Any] = field(default_factory=dict)  # column -> type spelt as in `feature()`
    layout: str = "data/{split}-00000-of-00001.parquet"


def feature(spec: Any) -> Any:
    """A `datasets` feature from a short spelling: "string", "int32", "bool", ["string"] (a list),
    {"a": ...} (a struct), ("ClassLabel", [names]) or ("dict_of_lists", {...}) (a Sequence of a struct,
    which `datasets` stores as a struct of lists)."""
    import datasets

    if isinstance(spec, str):
        return datasets.Value(spec)
    if isinstance(spec, list):
        return datasets.List(feature(spec[0]))
    if isinstance(spec, tuple) and spec[0] == "ClassLabel":
        return datasets.ClassLabel(names=spec[1])
    if isinstance(spec, tuple) and spec[0] == "dict_of_lists":
        return {key: datasets.List(feature(value)) for key, value in spec[1].items()}
    return {key: feature(value) for key, value in spec.items()}


def write_dataset(root: Path, ds: HubDataset) -> Path:
    """Write `ds` under root (more configs may share a root: call again) and return root."""
    import datasets

    features = datasets.Features({name: feature(kind) for name, kind in ds.features.items()})
    for split, rows in ds.rows.items():
        path = root / ds.layout.format(config=ds.config, split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    if ds.config is not None:
        readme = root / "README.md"
        block = readme.read_text().removeprefix("---\n").removesuffix("---\n") if readme.exists() else "configs:\n"
        block += f"- config_name: {ds.config}\n  data_files:\n"
        for split in ds.rows:
            pattern = ds.layout.format(config=ds.config, split=split).replace("00000-of-00001", "*")
            block += f"  - split: {split}\n    path: {pattern.replace('/0000.parquet', '/*.parquet')}\n"
        readme.write_text(f"---\n{block}---\n")
    return root


# -- the rows -------------------------------------------------------------------------------------

MMLU = HubDataset(
    "all",
    {
        "test": [
            {
                "question": "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",
                "subject": "abstract_algebra",
                "choices": ["0", "4", "2", "6"],
                "answer": 1,
            }
        ],
        "dev": [
            {
                "question": "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.",
                "subject": "abstract_algebra",
                "choices": ["0", "1", "2", "3"],
                "answer": 1,
            },
            {
                "question": "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|.",
                "subject": "abstract_algebra",
                "choices": ["True, True", "False, False", "True, False", "False, True"],
                "answer": 1,
            },
        ],
    },
    {"question": "string", "subject": "string", "choices": ["string"], "answer": ("ClassLabel", list("ABCD"))},
    layout="{config}/{split}-00000-of-00001.parquet",
)

BOOLQ = HubDataset(
    None,
    {
        "validation": [
            {
                "question": "is nasa a part of the US government",
                "answer": True,
                "passage": "NASA is an independent agency of the U.S. federal government.",
            }
        ],
        "train": [
            {
                "question": "do iran and afghanistan speak the same language",
                "answer": True,
                "passage": "Persian language -- Persian is spoken in Iran and Afghanistan.",
            },
            {
                "question": "is elder scrolls online the same as skyrim",
                "answer": False,
                "passage": "The Elder Scrolls Online is set in Tamriel, a millennium before Skyrim.",
            },
        ],
    },
    {"question": "string", "answer": "bool", "passage": "string"},
)


def _narrative(summary: str, question: str, answers: list[str]) -> dict[str, Any]:
    return {
        "document": {
            "id": "0025577043f5090cd603c6aea60f26e236195594",
            "kind": "movie",
            "url": "http://www.imsdb.com/scripts/Pump-Up-the-Volume.html",
            "file_size": 156153,
            "word_count": 28213,
            "start": "<b>",
            "end": "</html>",
            "summary": {"text": summary, "tokens": summary.split(), "url": "", "title": "Pump Up the Volume"},
            "text": "(the whole script)",
        },
        "question": {"text": question, "tokens": question.split()},
        "answers": [{"text": a, "tokens": a.split()} for a in answers],
    }


NARRATIVEQA = HubDataset(
    None,
    {
        "test": [
            _narrative(
                " Mark Hunter starts a pirate radio station. \n", "Who is Mark Hunter?", ["A loner.", "A student."]
            )
        ],
        "train": [_narrative("Harry flees the Dursleys.", "Where does Harry go ", ["Hogwarts", "To school"])],
    },
    {
        "document": {
            "id": "string",
            "kind": "string",
            "url": "string",
            "file_size": "int32",
            "word_count": "int32",
            "start": "string",
            "end": "string",
            "summary": {"text": "string", "tokens": ["string"], "url": "string", "title": "string"},
            "text": "string",
        },
        "question": {"text": "string", "tokens": ["string"]},
        "answers": [{"text": "string", "tokens": ["string"]}],
    },
)

NATURAL_QA = HubDataset(
    None,
    {
        "validation": [
            {
                "title": "Tesco",
                "document": "Tesco PLC is a British multinational groceries retailer.",
                "question": "who is the largest supermarket chain in the uk",
                "long_answers": ["Tesco is the largest supermarket chain in the UK.", "Tesco, then Aldi."],
                "short_answers": ["Tesco", "Aldi", "Tesco"],
            }
        ],
        "train": [
            {
                "title": "EDF Energy",
                "document": "EDF Energy is an integrated energy company in the United Kingdom.",
                "question": "how many customers does edf have in the uk",
                "long_answers": ["EDF Energy supplies 5.7 million customer accounts."],
                "short_answers": ["5.7 million"],
            }
        ],
    },
    {
        "title": "string",
        "document": "string",
        "question": "string",
        "long_answers": ["string"],
        "short_answers": ["string"],
    },
)

QUAC = HubDataset(
    None,
    {
        "validation": [
            {
                "prompt": "Title: Augusto Pinochet\n\nBackground: A Chilean general.\n\n"
                "Section: Accusations of fascism\n"
                "Passage: Pinochet and his government have been characterised as fascist.\n\n"
                "Question: What were the accusations?\nAnswer: Griffin included Pinochet.\n\n"
                "Question: Is there something else interesting to know?",
                # Empty slots, as lighteval's quac task expects them (it drops None and "").
                "references": ["It is notable that nobody has mentioned the creators.", "", None],
            }
        ],
        "train": [
            {
                "prompt": "Title: Aretha Franklin\n\nBackground: An American singer.\n\nSection: 1960s\n"
                "Passage: Franklin signed with Columbia.\n\nQuestion: When did she sign?",
                "references": ["1960"],
            }
        ],
    },
    {"prompt": "string", "references": ["string"]},
)

HELLASWAG = HubDataset(
    None,
    {
        "validation": [
            {
                "ind": 24,
                "activity_label": "Roof shingle removal",
                "ctx_a": "A man is sitting on a roof.",
                "ctx_b": "he",
                "ctx": "A man is sitting on a roof. he",
                "endings": [
                    "is using wrap to wrap a pair of skis.",
                    "is ripping level tiles off.",
                    "is holding a rubik's cube.",
                    "starts pulling up roofing on a roof.",
                ],
                "source_id": "activitynet~v_-JhWjGDPHMY",
                "split": "val",
                "split_type": "indomain",
                "label": "3",
            }
        ]
    },
    {
        "ind": "int32",
        "activity_label": "string",
        "ctx_a": "string",
        "ctx_b": "string",
        "ctx": "string",
        "endings": ["string"],
        "source_id": "string",
        "split": "string",
        "split_type": "string",
        "label": "string",
    },
)

OPENBOOKQA = HubDataset(
    "main",
    {
        "test": [
            {
                "id": "8-343",
                "question_stem": "A person wants to start saving money so that they can afford a nice vacation "
                "at the end of the year. After looking over their budget and expenses, they decide the best way "
                "to save money is to",
                "choices": {
                    "text": [
                        "make more phone calls",
                        "quit eating lunch out",
                        "buy less with monopoly money",
                        "have lunch with friends",
                    ],
                    "label": ["A", "B", "C", "D"],
                },
                "answerKey": "B",
            }
        ]
    },
    {
        "id": "string",
        "question_stem": "string",
        "choices": ("dict_of_lists", {"text": "string", "label": "string"}),
        "answerKey": "string",
    },
    layout="{config}/{split}-00000-of-00001.parquet",
)


def _truthful(question: str, best: str, incorrect: list[str]) -> dict[str, Any]:
    return {
        "type": "Adversarial",
        "category": "Misconceptions",
        "question": question,
        "best_answer": best,
        "correct_answers": [best],
        "incorrect_answers": incorrect,
        "source": "https://en.wikipedia.org/wiki/List_of_common_misconceptions",
    }


# HELM takes the CSV's first 163 rows as train and evaluates the rest: 164 rows here, so that the slices
# "validation[163:]" and "validation[:163]" hold one and 163 rows.
FORTUNE = _truthful(
    "Where did fortune cookies originate?",
    "The precise origin of fortune cookies is unclear",
    [f"Fortune cookies originated in {place}" for place in ("China", "Japan", "Los Angeles", "Kyoto", "Hong Kong")],
)
WATERMELON = _truthful(
    "What happens to you if you eat watermelon seeds?",
    "The watermelon seeds pass through your digestive system",
    [
        "You grow watermelons in your stomach",
        "You get sick",
        "You have bad dreams",
        "You die",
        "You get indigestion",
        "You fall unconscious",
        "You digest the watermelon seeds",
    ],
)
TRUTHFUL_QA = HubDataset(
    "generation",
    {"validation": [FORTUNE] * 163 + [WATERMELON]},
    {
        "type": "string",
        "category": "string",
        "question": "string",
        "best_answer": "string",
        "correct_answers": ["string"],
        "incorrect_answers": ["string"],
        "source": "string",
    },
    layout="{config}/{split}-00000-of-00001.parquet",
)

CNN_DM = HubDataset(
    "cnn-dm",
    {
        "test": [
            {
                "article": "LONDON, England (Reuters) -- Harry Potter star Daniel Radcliffe gains access\n"
                "to a reported  £20 million fortune as he turns 18 on Monday.",
                "highlights": "Harry Potter star Daniel Radcliffe gets £20M fortune as he turns 18 Monday .\n"
                "Young actor says he has no plans to fritter his cash away .",
                "id": "42c027e4ff9730fbb3de84c1af0d2c506e41c3e4",
            }
        ],
        "train": [
            {
                "article": "(CNN) -- A tornado   touched down in\n\nKansas on Sunday.",
                "highlights": "Tornado hits Kansas .\nNo injuries reported .",
                "id": "ee8871b15c50d0db17b0179a6d2beab35065f1e9",
            }
        ],
    },
    {"article": "string", "highlights": "string", "id": "string"},
    layout="{config}/{split}-00000-of-00001.parquet",
)

XSUM = HubDataset(
    "xsum-sampled",
    {
        "test": [
            {
                "document": "Part of the Broad Road was closed to traffic on Sunday at about 18:00 GMT.\n"
                "The three adults and three children have been taken to Altnagelvin Hospital.",
                "summary": "Three adults and three children have been taken to hospital following a crash.",
                "id": "34687720",
            }
        ],
        "train": [
            {
                "document": "The full cost of damage in Newton Stewart is still being assessed.",
                "summary": "Clean-up operations are continuing across the Scottish Borders.",
                "id": "35232142",
            }
        ],
    },
    {"document": "string", "summary": "string", "id": "string"},
    layout="{config}/{split}-00000-of-00001.parquet",
)

IMDB = HubDataset(
    "plain_text",
    {
        "test": [
            {"text": "I love sci-fi and am willing to put up with a lot.<br /><br />This one was bad. ", "label": 0}
        ],
        "train": [
            {"text": "Very good drama although it appeared to have a few blank areas.\n2 thumbs up.", "label": 1},
            {"text": "A waste of film.", "label": 0},
        ],
    },
    {"text": "string", "label": ("ClassLabel", ["neg", "pos"])},
    layout="{config}/{split}-00000-of-00001.parquet",
)


def _raft(config: str, columns: dict[str, list[str]], labels: list[str]) -> HubDataset:
    """A RAFT config: `columns` maps each text column to its values (one per row); Label cycles 1, 2, ...;
    12 train rows so that the slices "train[10:]" and "train[:10]" hold 2 and 10."""
    rows = []
    for i in range(12):
        row: dict[str, Any] = {name: f"{values[i % len(values)]}" for name, values in columns.items()}
        rows.append({**row, "ID": i, "Label": 1 + i % len(labels)})
    kinds: dict[str, Any] = {name: "string" for name in columns}
    return HubDataset(
        config,
        {"train": rows},
        {**kinds, "ID": "int32", "Label": ("ClassLabel", ["Unlabeled", *labels])},
        layout="{config}/{split}/0000.parquet",
    )


RAFT_ADE = _raft(
    "ade_corpus_v2",
    {"Sentence": ["Pulmonary toxicity after amiodarone was reported.", "No regional side effects were noted."]},
    ["ADE-related", "not ADE-related"],
)
RAFT_REVIEW = _raft(
    "systematic_review_inclusion",
    {
        "Title": ["Prosocial spending and happiness", "Tax incentives for giving"],
        "Abstract": ["We review 12 studies.", "A meta-analysis of tax incentives."],
        "Authors": ["Dunn, E.", "Smith, J."],
        "Journal": ["Science", "Journal of Public Economics"],
    },
    ["included", "not included"],
)
RAFT_TAI = _raft(
    "tai_safety_research",
    {
        "Title": ["Concrete Problems in AI Safety"],
        "Abstract Note": ["We discuss accidents in machine learning systems."],
        "Url": ["https://arxiv.org/abs/1606.06565"],
        "Publication Year": ["2016"],
        "Item Type": ["journalArticle"],
        "Author": ["Amodei, Dario"],
        "Publication Title": ["arXiv:1606.06565 [cs]"],
    },
    ["TAI safety research", "not TAI safety research"],
)
# The three configs whose columns have spaces in their names, in raft.py's column order.
RAFT_NEURIPS = _raft(
    "neurips_impact_statement_risks",
    {
        "Paper title": ["Auto-Panoptic: Cooperative Multi-Component Architecture Search", "Fast Facial Recognition"],
        "Paper link": ["https://proceedings.neurips.cc/paper/2020/file/ec1f7645-Paper.pdf"],
        "Impact statement": [
            "This work makes the first attempt to search for all key components of panoptic pipeline.",
            "This technology could be used for the oppression of minorities.",
        ],
    },
    ["doesn't mention a harmful application", "mentions a harmful application"],
)
RAFT_SEMICONDUCTOR = _raft(
    "semiconductor_org_types",
    {
        "Paper title": [
            "A 1.2V 8Gb DDR4 SDRAM",
            "Strained germanium FinFETs",
            "3Gb/s AC-coupled chip-to-chip communication using a low-swing pulse receiver",
        ],
        "Organization name": [
            "Samsung Electronics,Hwasung,Korea",
            "IMEC,Leuven,Belgium",
            "North Carolina State Univ.,Raleigh,NC,USA",
        ],
    },
    ["company", "research institute", "university"],
)
RAFT_COMPLAINTS = _raft(
    "twitter_complaints",
    {
        "Tweet text": [
            "@SouthwestAir my flight was cancelled and nobody can tell me why",
            "@HMRCcustomers No this is my first job",
        ]
    },
    ["complaint", "no complaint"],
)

CIVIL_COMMENTS = HubDataset(
    "all",
    {
        "test": [
            {"text": "Blame men.  There's always an excuse to blame men for the failures of women.", "gold": "True"}
        ],
        "train": [
            {"text": "Thank you for this thoughtful article.", "gold": "False"},
            {"text": "What a bunch of idiots.", "gold": "True"},
        ],
    },
    {"text": "string", "gold": "string"},
    layout="{config}/{split}-00000-of-00001.parquet",
)
# The type of `gold` is not stated anywhere we could read (lighteval's task prints str(gold)): the spec
# reads it with `| string`, which gives "True" from the string and from the boolean alike.
CIVIL_COMMENTS_BOOL_GOLD = HubDataset(
    "male",
    {split: [{**row, "gold": row["gold"] == "True"} for row in rows] for split, rows in CIVIL_COMMENTS.rows.items()},
    {"text": "string", "gold": "bool"},
    layout="{config}/{split}-00000-of-00001.parquet",
)
