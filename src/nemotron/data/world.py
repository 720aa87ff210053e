"""The embedded corpus: a small world generated from the seed, told as short stories, with held-out questions.

Why this shape: a ~1M-parameter model trained for a minute on two CPU cores must learn something measurable, so the
world is small and every fact is repeated often. Each person has a city, a job, a pet and a favourite colour; each
fact can be told with four templates; one template per fact is **held out** — never used in any generated document —
and becomes that fact's evaluation item. A model answers it only if it learned the fact from the other three
phrasings and the held-out phrasing from other people's facts. Small sums (``3 plus 4 is 7``, operands 0-5) follow the
same scheme. Sixteen people were chosen after measuring: a 1M-parameter GPT trained for 150 steps of 32x128 tokens
answered ~95 % of the person items and ~40 % of the sums (32 people: ~45 % overall).

Multiple-choice items have ``NUM_CHOICES`` one-word choices of the same kind (four cities, four numbers), so chance
accuracy is exactly ``1 / NUM_CHOICES`` = 0.25 and no choice can be told apart by its type alone.

Everything is a pure function of the seed: the same seed gives the same world, documents and items; the document
stream is infinite and ``documents(n)`` is a prefix of ``documents(n + k)``, so scales share their first documents.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nemotron.fsutil import atomic_write_text

NUM_CHOICES = 4
CHANCE_ACC = 1 / NUM_CHOICES
NUM_PEOPLE = 16
MAX_OPERAND = 5

# Documents at full scale; tiny (1 %) gives 5,000 documents, ~145k tokens: a minute of CPU training sees each 3-4 times.
FULL_SCALE_DOCUMENTS = 500_000

# fmt: off
NAMES = (
    "Alice", "Bruno", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Irene", "Jonas", "Karla", "Liam", "Mona",
    "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Walter", "Xenia", "Yusuf", "Zoe",
    "Anton", "Berta", "Cyril", "Dora", "Emil", "Frida", "Gustav", "Hanna", "Ivan", "Julia", "Kevin", "Lotte",
)
CITIES = ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Berlin", "Madrid", "Dublin", "Vienna", "Prague", "Quito")
JOBS = ("baker", "doctor", "teacher", "farmer", "pilot", "painter", "nurse", "lawyer", "miner", "singer")
PETS = ("cat", "dog", "parrot", "rabbit", "turtle", "hamster", "horse", "goat")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown")
# fmt: on

# attribute -> (possible values, templates). Every template has its {name} before the {value} slot, so the text up to
# the value (the query) names the subject, and the value is a single word scored as " " + value.
ATTRIBUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "city": (
        CITIES,
        (
            "{name} lives in {value}.",
            "{name} has a small house in {value}.",
            "The home of {name} is in {value}.",
            "{name} moved to {value} many years ago.",
        ),
    ),
    "job": (
        JOBS,
        (
            "{name} works as a {value}.",
            "By trade, {name} is a {value}.",
            "Everyone knows that {name} is a {value}.",
            "{name} earns a living as a {value}.",
        ),
    ),
    "pet": (
        PETS,
        (
            "{name} owns a {value}.",
            "{name} takes care of a pet {value}.",
            "At home, {name} keeps a {value}.",
            "The pet of {name} is a {value}.",
        ),
    ),
    "colour": (
        COLOURS,
        (
            "The favourite colour of {name} is {value}.",
            "{name} likes the colour {value}.",
            "{name} always wears {value}.",
            "{name} painted the door {value}.",
        ),
    ),
}

SUM_TEMPLATES = (
    "{a} plus {b} is {value}.",
    "The sum of {a} and {b} is {value}.",
    "Adding {a} to {b} gives {value}.",
    "If you add {b} to {a} you get {value}.",
)

FILLERS = (
    "It was a quiet day in spring.",
    "The neighbours often talk about this.",
    "Nobody was surprised to hear it.",
    "The story is told again every winter.",
    "Friends visit on most weekends.",
    "Life there is calm and simple.",
)

SUM_DOCUMENT_SHARE = 0.25


@dataclass(frozen=True)
class Fact:
    """One statement the world knows: ``subject`` (a name or ``"3+4"``), its ``kind`` and ``value``."""

    kind: str
    subject: str
    value: str
    fills: tuple[tuple[str, str], ...]  # template fields besides the value, e.g. (("name", "Alice"),)
    templates: tuple[str, ...]
    held_out: int  # index of the template reserved for evaluation
    distractor_pool: tuple[str, ...]

    def sentence(self, template_index: int) -> str:
        return self.templates[template_index].format(value=self.value, **dict(self.fills))

    def held_out_query(self) -> str:
        """The held-out sentence up to (not including) the space before the value."""
        template = self.templates[self.held_out]
        return template[: template.index(" {value}")].format(**dict(self.fills))

    def training_templates(self) -> list[int]:
        return [i for i in range(len(self.templates)) if i != self.held_out]


class World:
    """People with four attributes each, plus every sum of two operands; one held-out phrasing per fact."""

    def __init__(self, seed: int):
        self.seed = seed
        rng = random.Random(f"nemotron-world-{seed}")
        self.people = rng.sample(NAMES, NUM_PEOPLE)
        facts: list[Fact] = []
        for name in self.people:
            for kind, (values, templates) in ATTRIBUTES.items():
                facts.append(
                    Fact(kind, name, rng.choice(values), (("name", name),), templates, rng.randrange(4), values)
                )
        numbers = tuple(str(n) for n in range(2 * MAX_OPERAND + 1))
        for a in range(MAX_OPERAND + 1):
            for b in range(MAX_OPERAND + 1):
                fills = (("a", str(a)), ("b", str(b)))
                facts.append(Fact("sum", f"{a}+{b}", str(a + b), fills, SUM_TEMPLATES, rng.randrange(4), numbers))
        self.facts = facts
        self.person_facts = {name: [f for f in facts if f.subject == name] for name in self.people}
        self.sum_facts = [f for f in facts if f.kind == "sum"]

    # ------------------------------------------------------------------------------------------- documents
    def documents(self, count: int) -> Iterator[str]:
        """The first ``count`` documents of this world's stream (never containing a held-out sentence)."""
        for index in range(count):
            yield self.document(index)

    def document(self, index: int) -> str:
        rng = random.Random(f"nemotron-doc-{self.seed}-{index}")
        if rng.random() < SUM_DOCUMENT_SHARE:
            facts = rng.sample(self.sum_facts, rng.randint(3, 6))
            return " ".join(f.sentence(rng.choice(f.training_templates())) for f in facts)
        name = rng.choice(self.people)
        facts = rng.sample(self.person_facts[name], rng.randint(2, 4))
        sentences = [f.sentence(rng.choice(f.training_templates())) for f in facts]
        if rng.random() < 0.5:
            sentences.insert(rng.randint(1, len(sentences)), rng.choice(FILLERS))
        return " ".join(sentences)

    # ------------------------------------------------------------------------------------- held-out items
    def multiple_choice_items(self) -> list[dict]:
        """``{"query", "choices", "gold", "kind"}``: the model scores ``" " + choice`` after ``query``."""
        rng = random.Random(f"nemotron-mc-{self.seed}")
        items = []
        for fact in self.facts:
            distractors = rng.sample([v for v in fact.distractor_pool if v != fact.value], NUM_CHOICES - 1)
            gold = rng.randrange(NUM_CHOICES)
            choices = distractors[:gold] + [fact.value] + distractors[gold:]
            items.append({"query": fact.held_out_query(), "choices": choices, "gold": gold, "kind": fact.kind})
        return items

    def generation_items(self) -> list[dict]:
        """``{"prompt", "target", "kind"}``: greedy generation after ``prompt`` should start with ``" " + target``."""
        return [{"prompt": f.held_out_query(), "target": f.value, "kind": f.kind} for f in self.facts]

    def held_out_sentences(self) -> list[str]:
        return [f.sentence(f.held_out) for f in self.facts]


MC_FILE = "facts_mc.jsonl"
GEN_FILE = "facts_gen.jsonl"


def write_eval_items(world: World, eval_dir: Path) -> dict[str, float]:
    """Write ``facts_mc.jsonl`` and ``facts_gen.jsonl`` under ``eval_dir``; return counts and chance accuracy."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    mc, gen = world.multiple_choice_items(), world.generation_items()
    atomic_write_text(eval_dir / MC_FILE, "".join(json.dumps(item) + "\n" for item in mc))
    atomic_write_text(eval_dir / GEN_FILE, "".join(json.dumps(item) + "\n" for item in gen))
    return {"eval_mc_items": len(mc), "eval_gen_items": len(gen), "mc_chance_acc": CHANCE_ACC}
