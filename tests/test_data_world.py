"""The embedded corpus: deterministic per seed, different across seeds, held-out items absent but answerable."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq

from nemotron.data.world import CHANCE_ACC, NUM_CHOICES, World

DOCS = 3000


def test_same_seed_same_world_documents_and_items():
    a, b = World(7), World(7)
    assert list(a.documents(200)) == list(b.documents(200))
    assert a.multiple_choice_items() == b.multiple_choice_items()
    assert a.generation_items() == b.generation_items()
    assert list(a.documents(50)) == list(a.documents(200))[:50]  # scales share a prefix


def test_different_seeds_differ():
    a, b = World(1), World(2)
    assert list(a.documents(100)) != list(b.documents(100))
    assert a.multiple_choice_items() != b.multiple_choice_items()
    assert {(f.subject, f.value) for f in a.facts} != {(f.subject, f.value) for f in b.facts}


def test_held_out_sentences_never_appear_in_generated_documents():
    world = World(3)
    corpus = "\n".join(world.documents(DOCS))
    for item in world.generation_items():
        assert f"{item['prompt']} {item['target']}" not in corpus


def test_every_held_out_fact_is_taught_by_other_phrasings_and_its_phrasing_by_other_facts():
    world = World(5)
    corpus = "\n".join(world.documents(DOCS))
    for fact in world.facts:
        taught = [i for i in fact.training_templates() if fact.sentence(i) in corpus]
        assert len(taught) >= 2, (fact.subject, fact.kind)
        template = fact.templates[fact.held_out]
        others = [f for f in world.facts if f.templates is fact.templates and f.held_out != fact.held_out]
        assert any(f.sentence(fact.held_out) in corpus for f in others), template


def test_multiple_choice_items_are_well_formed_and_chance_is_a_quarter():
    world = World(11)
    items = world.multiple_choice_items()
    assert CHANCE_ACC == 1 / NUM_CHOICES == 0.25
    assert len(items) == len(world.facts) >= 100
    golds = [item["gold"] for item in items]
    assert set(golds) == set(range(NUM_CHOICES))  # the gold position is not a giveaway
    pools = {kind: {c for item in items if item["kind"] == kind for c in item["choices"]} for kind in {"city", "sum"}}
    for item in items:
        assert len(item["choices"]) == NUM_CHOICES == len(set(item["choices"]))
        assert all(re.fullmatch(r"\w+", choice) for choice in item["choices"])
        if item["kind"] in pools:  # distractors are of the gold's own kind
            assert set(item["choices"]) <= pools[item["kind"]]
        assert not item["query"].endswith(" ")


def test_curated_splits_and_eval_files_keep_held_out_items_apart(curated_dataset):
    texts = pq.read_table(curated_dataset.train_path).column("text").to_pylist()
    texts += pq.read_table(curated_dataset.valid_path).column("text").to_pylist()
    corpus = "\n".join(texts)
    mc = [json.loads(line) for line in (curated_dataset.eval_dir / "facts_mc.jsonl").read_text().splitlines()]
    gen = [json.loads(line) for line in (curated_dataset.eval_dir / "facts_gen.jsonl").read_text().splitlines()]
    assert len(mc) == len(gen) == curated_dataset.metrics["eval_mc_items"]
    for item in mc:
        assert f"{item['query']} {item['choices'][item['gold']]}" not in corpus
    for item in gen:
        assert f"{item['prompt']} {item['target']}" not in corpus
        assert item["prompt"] in {m["query"] for m in mc}
    assert curated_dataset.metrics["mc_chance_acc"] == 0.25
