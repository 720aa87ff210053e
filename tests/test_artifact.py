"""The artifact kit: the contract every step, pipe and sbatch job relies on. Real files, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import Field

from nemotron.artifact import Artifact, ArtifactError, apply_scale, print_complete
from nemotron.registry import Registry, RegistryError
from nemotron.scale import ScaleError


class Dataset(Artifact):
    num_examples: int = Field(gt=0)
    train_path: Path


class Checkpoint(Artifact):
    num_steps: int = Field(gt=0)


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, **kwargs)


# ------------------------------------------------------------------------------------------------ save / load
def test_round_trip_keeps_subclass_fields_and_core_fields(tmp_path):
    saved = Dataset(path=tmp_path / "ds", num_examples=7, train_path=tmp_path / "ds/train.parquet", metrics={"x": 1.5})
    metadata = saved.save()
    assert metadata == tmp_path / "ds" / "metadata.json"
    loaded = Dataset.load(tmp_path / "ds")
    assert loaded == saved
    assert loaded.type == "Dataset"
    assert json.loads(metadata.read_text())["num_examples"] == 7
    assert Dataset.load(metadata).num_examples == 7  # the metadata file itself is accepted too


def test_base_class_reads_any_artifact(tmp_path):
    Dataset(path=tmp_path, num_examples=1, train_path=tmp_path).save()
    generic = Artifact.load(tmp_path)
    assert generic.type == "Dataset" and generic.path == tmp_path


def test_subclass_validation_rejects_zero_examples(tmp_path):
    with pytest.raises(ValueError, match="num_examples"):
        Dataset(path=tmp_path, num_examples=0, train_path=tmp_path)
    assert not (tmp_path / "metadata.json").exists()


def test_loading_with_the_wrong_type_names_both_types(tmp_path):
    Dataset(path=tmp_path, num_examples=3, train_path=tmp_path).save()
    with pytest.raises(ArtifactError) as err:
        Checkpoint.load(tmp_path)
    assert "Dataset" in str(err.value) and "Checkpoint" in str(err.value)


def test_missing_metadata_names_the_file(tmp_path):
    with pytest.raises(ArtifactError, match=str(tmp_path / "nothing" / "metadata.json")):
        Dataset.load(tmp_path / "nothing")


def test_corrupt_metadata_names_the_file(tmp_path):
    (tmp_path / "metadata.json").write_text('{"path": "/x", "type": "Data')
    with pytest.raises(ArtifactError, match=r"corrupt .*metadata\.json"):
        Dataset.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"path": "/x", "type": "Dataset\xff"}', "corrupt .*: not UTF-8"),
        (b"[" * 100_000, "corrupt .*: JSON nested too deeply"),  # RecursionError in json
        (b'{"path": "/x", "num_examples": 1' + b"0" * 5000 + b"}", "corrupt .*metadata.json"),  # int too long
    ],
)
def test_unreadable_metadata_is_an_artifact_error(tmp_path, content, message):
    (tmp_path / "metadata.json").write_bytes(content)
    with pytest.raises(ArtifactError, match=message) as err:
        Dataset.load(tmp_path)
    assert "\n" not in str(err.value)


def test_a_path_with_a_newline_stays_on_one_line(tmp_path):
    with pytest.raises(ArtifactError) as err:
        Dataset.load(tmp_path / "a\nb")
    assert "\n" not in str(err.value) and repr(str(tmp_path / "a\nb")) in str(err.value)


def test_invalid_field_in_metadata_names_the_field(tmp_path):
    Dataset(path=tmp_path, num_examples=3, train_path=tmp_path).save()
    data = json.loads((tmp_path / "metadata.json").read_text())
    (tmp_path / "metadata.json").write_text(json.dumps({**data, "num_examples": -1}))
    with pytest.raises(ArtifactError, match="num_examples"):
        Dataset.load(tmp_path)


def test_lineage_records_tracked_name_and_version(tmp_path):
    source = Dataset(path=tmp_path / "ds", num_examples=3, train_path=tmp_path)
    source.save()
    source.publish("pretrain-data", root=tmp_path)
    loaded = Dataset.load(tracked_artifact="pretrain-data:latest", root=tmp_path)
    entry = loaded.as_lineage(step="data_curation")
    assert (entry.type, entry.name, entry.version, entry.path) == ("Dataset", "pretrain-data", 1, tmp_path / "ds")


# ------------------------------------------------------------------------------------------------ atomicity
SLOW_WRITER = """
import os, sys, time
from pathlib import Path
from pydantic import Field
from nemotron.artifact import Artifact

class Dataset(Artifact):
    num_examples: int = Field(gt=0)

target = Path(sys.argv[1])
real_fsync = os.fsync
def slow_fsync(fd):  # a deliberately slow writer: the kill lands while the temp file is half done or unsynced
    time.sleep(0.02)
    real_fsync(fd)
os.fsync = slow_fsync
blob = "x" * 2_000_000
for generation in range(1, 1000):
    print(generation, flush=True)
    Dataset(path=target, num_examples=generation, config={"blob": blob, "generation": generation}).save()
"""


def test_sigkill_during_save_leaves_previous_or_new_artifact_never_a_partial_one(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(SLOW_WRITER)
    for attempt in range(6):
        target = tmp_path / f"ds{attempt}"
        kill_during = 1 + attempt % 3  # generation whose save() the kill interrupts (or the one after)
        child = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True)
        while int(child.stdout.readline()) < kill_during:
            pass
        time.sleep(0.007 * attempt)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if kill_during == 1 and not (target / "metadata.json").exists():
            continue  # killed inside the very first save: no artifact at all is the right answer
        loaded = Artifact.load(target)  # must parse and validate completely
        assert loaded.config["blob"] == "x" * 2_000_000
        assert loaded.config["generation"] >= kill_during - 1
        assert json.loads(loaded.metadata_path.read_text())["num_examples"] == loaded.config["generation"]


# ------------------------------------------------------------------------------------------------ stdin piping
def test_stdin_piping_between_two_real_processes(tmp_path):
    producer = f"""
        from pathlib import Path
        from nemotron.artifact import Artifact, print_complete
        class Dataset(Artifact):
            num_examples: int
        ds = Dataset(path=Path({str(tmp_path / "ds")!r}), num_examples=42)
        ds.save()
        print_complete({{"data_curation": ds}})
    """
    consumer = """
        from nemotron.artifact import Artifact
        class Dataset(Artifact):
            num_examples: int
        print(Dataset.load().num_examples)
    """
    up = subprocess.Popen([sys.executable, "-c", textwrap.dedent(producer)], stdout=subprocess.PIPE)
    down = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(consumer)], stdin=up.stdout, capture_output=True, text=True
    )
    up.wait()
    assert up.returncode == 0
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "42"


def test_load_without_any_source_says_what_to_pass():
    result = run_python(
        """
        from nemotron.artifact import Artifact, ArtifactError
        try:
            Artifact.load()
        except ArtifactError as err:
            print(err)
        """,
        stdin=subprocess.DEVNULL,
    )
    assert "pass its directory, a tracked name" in result.stdout


def test_stdin_of_the_wrong_type_names_what_it_carries(tmp_path):
    Dataset(path=tmp_path, num_examples=1, train_path=tmp_path).save()
    doc = json.dumps(
        {"schema": "nemotron.step-output/v1", "artifacts": {"d": {"type": "Dataset", "path": str(tmp_path)}}}
    )
    result = run_python(
        """
        from nemotron.artifact import Artifact, ArtifactError
        class Checkpoint(Artifact):
            pass
        try:
            Checkpoint.load()
        except ArtifactError as err:
            print(err)
        """,
        input=doc,
    )
    assert "stdin carries Dataset, not a Checkpoint" in result.stdout


def test_print_complete_writes_one_json_document_and_a_summary(tmp_path, capsys):
    ds = Dataset(path=tmp_path, num_examples=2, train_path=tmp_path, metrics={"tokens": 10.0})
    print_complete({"data_curation": ds})
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1
    document = json.loads(out)
    assert document["schema"] == "nemotron.step-output/v1"
    assert document["artifacts"]["data_curation"]["num_examples"] == 2
    assert "data_curation" in err and "tokens=10" in err


# ------------------------------------------------------------------------------------------------ registry
PUBLISHER = """
import sys
from pathlib import Path
from nemotron.artifact import Artifact
root, i = Path(sys.argv[1]), sys.argv[2]
a = Artifact(path=root / "data" / i, config={"publisher": i})
a.save()
print(a.publish("corpus", root=root))
"""


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    script = tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path), str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(8)
    ]
    versions = sorted(int(p.communicate()[0]) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert versions == list(range(1, 9))
    registry = Registry(tmp_path)
    assert registry.versions("corpus") == list(range(1, 9))
    assert (tmp_path / "registry" / "corpus" / "latest").read_text().strip() == "v8"
    assert registry.resolve("corpus:latest")[1] == 8


def test_tracked_names_resolve_latest_and_explicit_versions(tmp_path):
    for i in range(3):
        Dataset(path=tmp_path / f"d{i}", num_examples=i + 1, train_path=tmp_path).save()
        Dataset.load(tmp_path / f"d{i}").publish("pretrain", root=tmp_path)
    assert Dataset.load(tracked_artifact="pretrain:latest", root=tmp_path).num_examples == 3
    assert Dataset.load(tracked_artifact="pretrain:v2", root=tmp_path).num_examples == 2


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("pretrain:v9", "has no version v9: available are v1"),
        ("nothing:latest", "no tracked artifact named 'nothing'"),
        ("pretrain", "expected NAME:latest or NAME:vN"),
        ("pretrain:v0", "expected NAME:latest or NAME:vN"),
        ("../etc:latest", "invalid artifact name"),
    ],
)
def test_tracked_name_errors_are_one_line(tmp_path, reference, message):
    Dataset(path=tmp_path / "d", num_examples=1, train_path=tmp_path).save()
    Dataset.load(tmp_path / "d").publish("pretrain", root=tmp_path)
    with pytest.raises(RegistryError, match=message) as err:
        Dataset.load(tracked_artifact=reference, root=tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/abs", "a..b", "", ".hidden", "x" * 200])
def test_path_traversal_and_bad_names_are_rejected(tmp_path, name):
    Dataset(path=tmp_path / "d", num_examples=1, train_path=tmp_path).save()
    with pytest.raises(RegistryError, match="invalid artifact name"):
        Dataset.load(tmp_path / "d").publish(name, root=tmp_path)
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").rglob("metadata.json"))


def test_a_version_still_being_written_is_invisible(tmp_path):
    Dataset(path=tmp_path / "d", num_examples=1, train_path=tmp_path).save()
    Dataset.load(tmp_path / "d").publish("pretrain", root=tmp_path)
    (tmp_path / "registry" / "pretrain" / "v2").mkdir()  # allocated by a publisher that has not finished
    assert Registry(tmp_path).resolve("pretrain:latest")[1] == 1
    with pytest.raises(RegistryError, match="no version v2"):
        Registry(tmp_path).resolve("pretrain:v2")


# ------------------------------------------------------------------------------------------------ scales
@pytest.mark.parametrize(
    ("n", "scale", "expected"),
    [
        (1000, "tiny", 10),
        (1000, "small", 100),
        (1000, "medium", 300),
        (1000, "full", 1000),
        (1, "tiny", 1),
        (0, "tiny", 0),
    ],
)
def test_apply_scale(n, scale, expected):
    assert apply_scale(n, scale) == expected


def test_apply_scale_never_returns_zero_for_a_positive_count():
    assert all(apply_scale(n, s) >= 1 for n in range(1, 200) for s in ("tiny", "small", "medium", "full"))


def test_unknown_scale_lists_the_valid_ones():
    with pytest.raises(ScaleError, match="unknown scale 'huge': valid scales are tiny, small, medium, full"):
        apply_scale(10, "huge")
    with pytest.raises(ScaleError, match="negative"):
        apply_scale(-1, "tiny")


# ------------------------------------------------------------------------------------------------ lightness
def test_importing_the_artifact_kit_does_not_import_heavy_libraries():
    result = run_python(
        """
        import sys, nemotron.artifact, nemotron.registry, nemotron.step
        print(sorted(m for m in ("torch", "megatron", "lm_eval", "pyarrow") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_artifact_defaults_record_producer_host_and_code_version(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    a = Artifact(path=tmp_path)
    assert a.producer == "slurm:4242"
    assert a.host == os.uname().nodename
    assert a.code_version.startswith("0.1.0")
