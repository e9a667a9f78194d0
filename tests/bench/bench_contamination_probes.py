"""Memorisation probes on famous passages: each copied verbatim and paraphrased, on the embedded model.

Writes a run whose instances are 15 famous passages (the three of tests/test_contamination_probes.py and 12
more) and a paraphrase of each (`NAME-famous`, `NAME-para`; run seed 0), runs `ngram_completion` and `min_k_pp`
(perturbation typos) with SmolLM2-135M-Instruct, and prints a Markdown table of the per-instance values, how
many passages each metric ranks above their paraphrase, the means, and the probes' cost. The table in
docs/contamination.md is this script's output. Lorem ipsum's "paraphrase" describes placeholder text (it has
no meaning to keep).

    python -m tests.bench.bench_contamination_probes
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from helmflow.flows.contamination_probes import ProbeOptions, run_probes
from tests.test_contamination_probes import FAMOUS, PARAPHRASED, write_run

# name -> (verbatim, paraphrase)
MORE = {
    "declaration": (
        (
            "When in the Course of human events, it becomes necessary for one people to dissolve the "
            "political bands which have connected them with another, and to assume among the powers of the "
            "earth, the separate and equal station to which the Laws of Nature and of Nature's God entitle "
            "them, a decent respect to the opinions of mankind requires that they should declare the causes "
            "which impel them to the separation."
        ),
        (
            "Whenever history reaches a point where a nation must cut the political ties that have bound it "
            "to another, and take up among the world's powers the independent and equal place that natural "
            "law and divine law grant it, basic regard for the views of humanity demands that it explain the "
            "reasons driving it to break away."
        ),
    ),
    "gettysburg": (
        (
            "Four score and seven years ago our fathers brought forth on this continent, a new nation, "
            "conceived in Liberty, and dedicated to the proposition that all men are created equal. Now we "
            "are engaged in a great civil war, testing whether that nation, or any nation so conceived and "
            "so dedicated, can long endure."
        ),
        (
            "Eighty-seven years back, our ancestors founded on this land a fresh country, born in freedom "
            "and committed to the idea that every person is made equal. Today we are caught up in a huge "
            "internal war, which tests whether that country, or any country founded and committed in that "
            "way, can survive for long."
        ),
    ),
    "lords_prayer": (
        (
            "Our Father, who art in heaven, hallowed be thy name; thy kingdom come, thy will be done, on "
            "earth as it is in heaven. Give us this day our daily bread, and forgive us our trespasses, as "
            "we forgive those who trespass against us; and lead us not into temptation, but deliver us from "
            "evil."
        ),
        (
            "Father of ours who lives in the sky, may your name be honored; may your rule arrive and your "
            "wishes be carried out here on the ground just as above. Provide us today with the food we need, "
            "pardon our wrongs as we pardon the people who wrong us, keep us away from being tested, and "
            "rescue us from harm."
        ),
    ),
    "genesis": (
        (
            "In the beginning God created the heaven and the earth. And the earth was without form, and "
            "void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of "
            "the waters. And God said, Let there be light: and there was light."
        ),
        (
            "At the very start, the Creator made the sky and the land. The land had no shape and was empty, "
            "and a deep blackness covered the ocean. The breath of the Creator drifted over the water. Then "
            "the Creator spoke, asking for brightness, and brightness appeared."
        ),
    ),
    "psalm": (
        (
            "The Lord is my shepherd; I shall not want. He maketh me to lie down in green pastures: he "
            "leadeth me beside the still waters. He restoreth my soul: he leadeth me in the paths of "
            "righteousness for his name's sake."
        ),
        (
            "God looks after me like a herdsman, so I lack nothing. He lets me rest in grassy fields and "
            "guides me to calm streams. He renews my spirit and leads me along good roads for the sake of "
            "his reputation."
        ),
    ),
    "hamlet": (
        (
            "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer the slings "
            "and arrows of outrageous fortune, or to take arms against a sea of troubles and by opposing end "
            "them."
        ),
        (
            "Should one go on living or not, that is what must be decided: whether it is more honourable to "
            "quietly endure the blows and stings of cruel luck, or to fight back against an ocean of "
            "problems and finish them by resisting."
        ),
    ),
    "pledge": (
        (
            "I pledge allegiance to the Flag of the United States of America, and to the Republic for which "
            "it stands, one Nation under God, indivisible, with liberty and justice for all."
        ),
        (
            "I promise to be loyal to the banner of the country and to the nation it represents, a single "
            "people under the Almighty that cannot be split, with freedom and fairness for everyone."
        ),
    ),
    "mit": (
        (
            "Permission is hereby granted, free of charge, to any person obtaining a copy of this software "
            'and associated documentation files (the "Software"), to deal in the Software without '
            "restriction, including without limitation the rights to use, copy, modify, merge, publish, "
            "distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the "
            "Software is furnished to do so, subject to the following conditions:"
        ),
        (
            "Anyone who gets a copy of this program and the documents that come with it is allowed, at no "
            "cost, to work with the program freely, which includes the right to use it, duplicate it, change "
            "it, combine it, release it, hand it on, license it further, and sell copies of it, and to let "
            "the people they give it to do the same, as long as the terms below are met:"
        ),
    ),
    "mit_asis": (
        (
            'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING '
            "BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND "
            "NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, "
            "DAMAGES OR OTHER LIABILITY"
        ),
        (
            "This program is handed over exactly as it is, with no promises of any sort, stated or assumed, "
            "including promises that it can be sold, that it suits some purpose, or that it breaks no "
            "rights. The people who wrote it or own it are never responsible for any demand, harm or other "
            "debt"
        ),
    ),
    "apache": (
        (
            'Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file '
            "except in compliance with the License. You may obtain a copy of the License at "
            "http://www.apache.org/licenses/LICENSE-2.0 Unless required by applicable law or agreed to in "
            'writing, software distributed under the License is distributed on an "AS IS" BASIS, WITHOUT '
            "WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied."
        ),
        (
            'This file is covered by version 2.0 of the Apache licence (the "Licence"), and you may use it '
            "only as that licence allows. The licence text can be read online at the Apache website. Except "
            "where the law demands it or someone agrees otherwise in writing, software shared under this "
            "licence comes exactly as it is, with no promises or guarantees of any sort, stated or assumed."
        ),
    ),
    "gpl": (
        (
            "This program is free software: you can redistribute it and/or modify it under the terms of the "
            "GNU General Public License as published by the Free Software Foundation, either version 3 of "
            "the License, or (at your option) any later version. This program is distributed in the hope "
            "that it will be useful, but WITHOUT ANY WARRANTY; without even the implied warranty of "
            "MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE."
        ),
        (
            "You are free to share and change this program under version 3 of the General Public License "
            "issued by the Free Software Foundation, or under any newer version you prefer. We share the "
            "program hoping it helps, but we promise nothing about it, not even that it is fit to sell or "
            "suitable for any specific use."
        ),
    ),
    "lorem": (
        (
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut "
            "labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
            "laboris nisi ut aliquip ex ea commodo consequat."
        ),
        (
            "Sample text goes here: some words are placed in this spot to fill the page, so that the layout "
            "can be judged before the real content is written, and the reader can see how the paragraph will "
            "look once it is finished."
        ),
    ),
}
PAIRS = {name: (FAMOUS[name], PARAPHRASED[name]) for name in FAMOUS} | MORE
COLUMNS = (("ngram_accuracy", ""), ("min_k_pp", ""), ("min_k", ""), ("min_k_pp_drop", "typos"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="helmflow-bench-probes-") as folder:
        db = Path(folder) / "probes.duckdb"
        texts = {
            f"{name}-{kind}": text
            for name, pair in PAIRS.items()
            for kind, text in zip(("famous", "para"), pair, strict=True)
        }
        write_run(db, texts)
        outcome = run_probes(db, "r1", ProbeOptions(), lambda line: print(line, file=sys.stderr))
    value = {(v.instance_id, v.metric, v.perturbation): v.value for v in outcome.values}
    print("| passage | " + " | ".join(f"{m}{f' ({p})' if p else ''} verbatim / paraphrase" for m, p in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in PAIRS:
        cells = [f"{value[f'{name}-famous', m, p]:.3g} / {value[f'{name}-para', m, p]:.3g}" for m, p in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for metric, perturbation in COLUMNS:
        famous = np.array([value[f"{n}-famous", metric, perturbation] for n in PAIRS], dtype=float)
        para = np.array([value[f"{n}-para", metric, perturbation] for n in PAIRS], dtype=float)
        print(
            f"{metric} {perturbation}: verbatim above its paraphrase for {int((famous > para).sum())} of {len(PAIRS)}; "
            f"means {famous.mean():.3f} verbatim, {para.mean():.3f} paraphrased"
        )
    for r in outcome.records:
        print(f"{r.probe}: {r.passes} forward passes, {r.tokens} tokens, {r.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
