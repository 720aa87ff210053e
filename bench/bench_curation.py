"""Curation throughput and memory at two corpus sizes: MB/s, docs/s and peak RSS, and the RSS ratio large/small.

MB/s is wall time; "MB per CPU-s" divides by the process's CPU time (all its threads), the figure that stays
comparable on a machine shared with other work (and, for one thread, what one idle core would do).

Generates two synthetic JSONL corpora (prose-like documents of 0.5-4 KB from a 20k-word vocabulary, with ~5 %
exact duplicates and ~3 % junk documents) into a temporary directory, deleted afterwards. Each curation runs the
real data_curation step in a fresh child process that reports its own peak RSS (``getrusage``) and its RSS right
after imports, so the memory the curation itself adds is visible apart from what its modules import.

The size runs reuse a tokenizer trained once on the small corpus (``--tokenizer-path``), so they measure curation
(read, normalise, score, dedup, split, Parquet, tokenize, indexed write); BPE training is timed separately.
The child imports only the step, as a curation job does, so "after imports" is a curation process's own footprint.

``--shards N`` also curates the large corpus as N shards (the step's ``shards``), one process per shard running at
once as an array's tasks do, and reports their throughput against the one-process run.

    uv run python bench/bench_curation.py                 # 20 MB and 200 MB
    uv run python bench/bench_curation.py --small-mb 5 --large-mb 50 --shards 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DUPLICATE_SHARE = 0.05
JUNK_SHARE = 0.03
VOCABULARY_WORDS = 20_000


def _vocabulary(rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    return ["".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(VOCABULARY_WORDS)]


def _document(rng: random.Random, words: list[str]) -> str:
    sentences = []
    for _ in range(rng.randint(5, 40)):
        sentence = " ".join(rng.choices(words, k=rng.randint(6, 18)))
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]
    return "\n\n".join(paragraphs)


def _junk(rng: random.Random) -> str:
    return " ".join(str(rng.randint(0, 10**6)) for _ in range(rng.randint(20, 200)))


def generate_corpus(path: Path, megabytes: float, seed: int = 0) -> dict[str, int]:
    """Write a JSONL corpus of about ``megabytes`` MB; return its byte and document counts."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    target, written, documents, recent = int(megabytes * 1e6), 0, 0, []
    with open(path, "w") as f:
        while written < target:
            roll = rng.random()
            if roll < DUPLICATE_SHARE and recent:
                text = rng.choice(recent)
            elif roll < DUPLICATE_SHARE + JUNK_SHARE:
                text = _junk(rng)
            else:
                text = _document(rng, words)
                recent = (recent + [text])[-100:]
            line = json.dumps({"text": text}) + "\n"
            f.write(line)
            written += len(line)
            documents += 1
    return {"bytes": written, "documents": documents}


def child(args: list[str]) -> None:
    """Run the step in this process and print its timing and memory (kilobytes from getrusage are Linux's unit)."""
    from nemotron.recipes.nano2.stage0_pretrain.data_curation import Config, main

    import_rss_mb = _current_rss_mb()
    config = Config(**json.loads(args[0]))
    start, cpu_start = time.perf_counter(), time.process_time()
    dataset = main(config)  # an array task whose Dataset another task completes returns None
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = dataset.metrics if dataset is not None else {}
    figures = {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_mb, "import_rss_mb": import_rss_mb}
    print(json.dumps({**figures, **metrics}))


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(config: dict) -> dict:
    return run_children(config, 1)[0]


def _array_env(index: int, tasks: int) -> dict[str, str]:
    return {"NEMOTRON_ARRAY_TASK": str(index), "NEMOTRON_ARRAY_TASKS": str(tasks)} if tasks > 1 else {}


def run_children(config: dict, tasks: int) -> list[dict]:
    """``tasks`` children at once: one plain run, or the array tasks 0..tasks-1 of a ``shards=tasks`` curation."""
    command = [sys.executable, __file__, "--child", json.dumps(config)]
    started = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one pipe each, read to the end: a few log lines, then the JSON line
            text=True,
            env={**os.environ, **_array_env(i, tasks)},
        )
        for i in range(tasks)
    ]
    results = []
    for child in started:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"curation failed:\n{out[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def report(label: str, corpus: dict, run: dict) -> None:
    mb = corpus["bytes"] / 1e6
    print(
        f"{label:<22} {mb:8.1f} MB {corpus['documents']:>9,} docs  {run['seconds']:7.1f} s  "
        f"{mb / run['seconds']:6.2f} MB/s ({mb / run['cpu_seconds']:5.2f} MB per CPU-s)  "
        f"{corpus['documents'] / run['seconds']:8,.0f} docs/s  "
        f"peak RSS {run['peak_rss_mb']:6.0f} MB (after imports {run['import_rss_mb']:4.0f} MB, "
        f"curation adds {run['peak_rss_mb'] - run['import_rss_mb']:5.0f} MB)  "
        f"kept {run['documents_kept']:,.0f}, duplicates {run['duplicate_rate']:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-mb", type=float, default=20)
    parser.add_argument("--large-mb", type=float, default=200)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--shards", type=int, default=0, help="also curate the large corpus as this many shards")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-curation-"))
    try:
        runs = {}
        for label, megabytes in (("small", options.small_mb), ("large", options.large_mb)):
            source = work / f"{label}.jsonl"
            started = time.perf_counter()
            corpus = generate_corpus(source, megabytes)
            print(f"generated {label} corpus: {corpus['bytes'] / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
            runs[label] = (source, corpus)

        small_source, small_corpus = runs["small"]
        base = {"scale": "full", "sources": [], "output_dir": None}
        bpe_config = {**base, "sources": [str(small_source)], "output_dir": str(work / "out-bpe")}
        bpe = run_child({**bpe_config, "vocab_size": options.vocab_size})
        report(f"small + BPE {options.vocab_size}", small_corpus, bpe)
        tokenizer = str(work / "out-bpe" / "tokenizer.json")

        results = {}
        for label, (source, corpus) in runs.items():
            config = {**base, "sources": [str(source)], "output_dir": str(work / f"out-{label}")}
            results[label] = run_child({**config, "tokenizer_path": tokenizer})
            report(f"{label} (given tokenizer)", corpus, results[label])
            shutil.rmtree(work / f"out-{label}")
        if options.shards > 1:
            source, corpus = runs["large"]
            config = {
                **base,
                "sources": [str(source)],
                "output_dir": str(work / "out-shards"),
                "tokenizer_path": tokenizer,
            }
            tasks = run_children({**config, "shards": options.shards}, options.shards)
            wall = max(t["seconds"] for t in tasks)  # the tasks' curation, as the one-process run is timed
            one = corpus["bytes"] / 1e6 / results["large"]["seconds"]
            print(
                f"large as {options.shards} shards at once: {wall:.1f} s, {corpus['bytes'] / 1e6 / wall:.2f} MB/s "
                f"({corpus['bytes'] / 1e6 / wall / one:.2f}x one process; CPU time of all tasks "
                f"{sum(t['cpu_seconds'] for t in tasks) / results['large']['cpu_seconds']:.2f}x its; peak RSS per task "
                f"{max(t['peak_rss_mb'] for t in tasks):.0f} MB)"
            )
        bpe_share = (bpe["seconds"] - results["small"]["seconds"]) / bpe["seconds"]
        print(f"BPE training share of the small run: {bpe_share:.0%}")
        size_ratio = runs["large"][1]["bytes"] / runs["small"][1]["bytes"]
        peak_ratio = results["large"]["peak_rss_mb"] / results["small"]["peak_rss_mb"]
        added = [results[k]["peak_rss_mb"] - results[k]["import_rss_mb"] for k in ("small", "large")]
        print(
            f"corpus size ratio large/small {size_ratio:.1f}x -> peak RSS ratio {peak_ratio:.2f}x "
            f"(memory added by curation: {added[0]:.0f} MB -> {added[1]:.0f} MB)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
