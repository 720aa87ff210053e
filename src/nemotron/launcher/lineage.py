"""``nemotron-launch lineage ARTIFACT_DIR|RUN``: what an artifact was made from, back to the raw sources.

Read from the artifacts' own ``metadata.json`` (their ``lineage`` entries), so it works on any artifact directory,
whoever made it; a RUN stands for its last artifacts (those no other step of the run read). Each node: the artifact's
type, the step that made it, scale, headline metric (the first figure the step recorded, as its summary line shows),
code digest and image. A data-curation artifact's raw sources are its ``config.sources`` (the files people gave), or
the recipe's embedded corpus when it names none.

Output: a tree on a terminal (stderr), one JSON document ``{"roots", "nodes", "edges"}`` on stdout when it is not
one, ``--format dot`` Graphviz source on stdout, ``--png FILE`` a picture drawn by Graphviz's ``dot``. An input
reached twice (a stage1 evaluation reads stage0's checkpoint through training and through its baseline) is drawn
once: the tree says where it was shown.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nemotron.artifact import METADATA_FILE, Artifact, ArtifactError, shown
from nemotron.errors import UserError

FORMATS = ("auto", "text", "json", "dot")
# the launcher's layout: <root>/<recipe>/<stage>/<step>/<scale>-<fingerprint>
_PLANNED_DIR = re.compile(r"^(tiny|small|medium|full)-[0-9a-f]{6,}$")
# a step run by hand: <root>/<recipe>/<stage>/<scale>-seed<seed>/<step>
_DEFAULT_PARENT = re.compile(r"^(tiny|small|medium|full)-seed\d+$")
_SKIPPED_METRICS = ("_stderr",)


@dataclass
class Node:
    id: str  # the artifact's resolved directory, or "source:<what>" for a raw source
    type: str  # the artifact's type, "Source", or "missing" (a lineage entry whose metadata is gone)
    step: str | None = None
    scale: str | None = None
    metric: dict[str, float] = field(default_factory=dict)  # the headline figure, {name: value}
    code_digest: str | None = None
    code_version: str | None = None
    image: str | None = None
    path: str | None = None


@dataclass
class Edge:
    consumer: str  # node id
    input: str  # node id
    role: str | None  # the lineage entry's step name: how the consumer used it


@dataclass
class Lineage:
    roots: list[str]
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def inputs(self, node_id: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.consumer == node_id]

    def as_dict(self) -> dict[str, Any]:
        return {
            "roots": self.roots,
            "nodes": {key: asdict(node) for key, node in self.nodes.items()},
            "edges": [asdict(edge) for edge in self.edges],
        }


def resolve_roots(reference: str) -> list[Path]:
    """The artifact directories ``reference`` names: an artifact directory (or its metadata.json), else a run id or
    run directory (its last finished artifacts). Bad input is one ``UserError`` line."""
    path = Path(reference).expanduser()
    if path.name == METADATA_FILE and path.is_file():
        return [path.parent]
    if (path / METADATA_FILE).is_file():
        return [path]
    from nemotron.launcher.runs import RUN_FILE, find_run

    if path.is_dir() and not (path / RUN_FILE).is_file():
        raise UserError(
            f"{shown(reference)} has no {METADATA_FILE} (not an artifact) and no {RUN_FILE} (not a run): give an "
            "artifact directory, a run id or a run directory"
        )
    return run_roots(find_run(reference))


def run_roots(run) -> list[Path]:
    """A run's last artifacts: those of its finished steps that no other step of the run reads."""
    read = {dependency for job in run.plan.jobs for dependency in job.depends_on}
    finished = [
        job for job in run.plan.jobs if run.steps[job.name].state in ("completed", "reused") and job.name not in read
    ]
    roots = [Path(job.output) for job in finished if (Path(job.output) / METADATA_FILE).is_file()]
    if not roots:
        raise UserError(f"run {run.run_id} has no finished artifact yet: see nemotron-launch status {run.run_id}")
    return roots


def build(roots: list[Path]) -> Lineage:
    """Walk every lineage entry from ``roots``, each artifact read once."""
    lineage = Lineage(roots=[str(Path(root).resolve()) for root in roots])
    pending: list[tuple[Path, str | None]] = [(Path(root), None) for root in roots]
    while pending:
        path, role = pending.pop(0)
        key = str(path.resolve())
        if key in lineage.nodes:
            continue
        try:
            artifact = Artifact.from_metadata_file(path / METADATA_FILE)
        except ArtifactError:
            if key in lineage.roots:
                raise
            lineage.nodes[key] = Node(id=key, type="missing", step=role, path=key)  # deleted since: still named
            continue
        lineage.nodes[key] = _node(key, artifact)
        for entry in artifact.lineage:
            lineage.edges.append(Edge(key, str(Path(entry.path).resolve()), entry.step))
            pending.append((Path(entry.path), entry.step))
        for source in _raw_sources(artifact):
            lineage.nodes.setdefault(source.id, source)
            lineage.edges.append(Edge(key, source.id, "source"))
    return lineage


def _node(key: str, artifact: Artifact) -> Node:
    headline = next(
        ((name, value) for name, value in artifact.metrics.items() if not name.endswith(_SKIPPED_METRICS)), None
    )
    return Node(
        id=key,
        type=artifact.type,
        step=_step_of(Path(key)),
        scale=artifact.config.get("scale"),
        metric=dict([headline]) if headline else {},
        code_digest=artifact.code_digest,
        code_version=artifact.code_version,
        image=artifact.image_id,
        path=key,
    )


def _step_of(path: Path) -> str:
    """The step that wrote ``path``, from where steps write: ``stage.step`` when the layout names the stage."""
    if _PLANNED_DIR.match(path.name):
        return f"{path.parent.parent.name}.{path.parent.name}"
    if _DEFAULT_PARENT.match(path.parent.name):
        return f"{path.parent.parent.name}.{path.name}"
    return path.name  # a stage module's --output-root/<step>, or an --output-dir of one's own


def _raw_sources(artifact: Artifact) -> list[Node]:
    """What a curation step read from outside any artifact: its ``sources`` (files, directories, globs), or the
    embedded corpus when it names none. Artifacts without the field (training, evaluation) have none."""
    if "sources" not in artifact.config:
        return []
    sources = artifact.config.get("sources") or []
    if not sources:
        what = f"embedded corpus (seed {artifact.config.get('seed')})"
        return [Node(id=f"source:{what}", type="Source", step=what)]
    return [Node(id=f"source:{source}", type="Source", step=str(source), path=str(source)) for source in sources]


# ----------------------------------------------------------------------------------------------- rendering
def node_line(node: Node) -> str:
    if node.type == "Source":
        return f"raw source: {node.step}"
    if node.type == "missing":
        return f"missing artifact (metadata.json gone): {node.path}"
    metric = ", ".join(f"{name}={value:.4g}" for name, value in node.metric.items()) or "no metrics"
    code = f"code {node.code_digest[:12]}" if node.code_digest else f"code {node.code_version} (no digest)"
    image = f"image {node.image[:19]}" if node.image else "no image"
    return f"{node.type}  {node.step}  {node.scale or '-'}  {metric}  {code}  {image}"


def text(lineage: Lineage) -> str:
    lines: list[str] = []
    drawn: set[str] = set()

    def draw(node_id: str, prefix: str, branch: str, role: str | None) -> None:
        node = lineage.nodes[node_id]
        label = f"{role}: " if role and role != "source" else ""
        if node_id in drawn:
            lines.append(f"{prefix}{branch}{label}{node.type} {node.step} (shown above)")
            return
        drawn.add(node_id)
        lines.append(f"{prefix}{branch}{label}{node_line(node)}")
        child_prefix = prefix + ("" if not branch else ("    " if branch.startswith("└") else "│   "))
        if node.path and node.type not in ("Source", "missing"):
            lines.append(f"{child_prefix}{'│' if lineage.inputs(node_id) else ' '}   {node.path}")
        edges = lineage.inputs(node_id)
        for i, edge in enumerate(edges):
            draw(edge.input, child_prefix, "└── " if i == len(edges) - 1 else "├── ", edge.role)

    for root in lineage.roots:
        draw(root, "", "", None)
    return "\n".join(lines)


def dot(lineage: Lineage) -> str:
    """Graphviz source: inputs above what was made from them."""
    ids = {key: f"n{i}" for i, key in enumerate(lineage.nodes)}
    lines = ["digraph lineage {", "  rankdir=BT;", '  node [shape=box, fontname="Helvetica", fontsize=10];']
    for key, node in lineage.nodes.items():
        if node.type == "Source":
            label, style = f"raw source\n{node.step}", ', style="rounded,filled", fillcolor="#e8f0fe"'
        else:
            label, style = node_line(node).replace("  ", "\n"), ""
        lines.append(f"  {ids[key]} [label={_quoted(label)}{style}];")
    for edge in lineage.edges:
        role = f" [label={_quoted(edge.role)}]" if edge.role else ""
        lines.append(f"  {ids[edge.input]} -> {ids[edge.consumer]}{role};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_png(source: str, target: Path) -> Path:
    """Draw Graphviz ``source`` into ``target`` with the ``dot`` program."""
    program = shutil.which("dot")
    if program is None:
        raise UserError(
            "--png needs Graphviz's dot program, not found on PATH: install graphviz (apt install graphviz)"
        )
    target = Path(target).expanduser()
    if not target.parent.is_dir():
        raise UserError(f"--png {shown(target)}: directory {shown(target.parent)} does not exist")
    done = subprocess.run([program, "-Tpng", "-o", str(target)], input=source, text=True, capture_output=True)
    if done.returncode != 0:  # our source is valid Graphviz: dot failing here is its own problem (a font, a disk)
        raise UserError(f"dot could not draw {shown(target)}: {' '.join(done.stderr.split())}")
    return target


def show(reference: str, output_format: str, png: Path | None) -> int:
    """The ``lineage`` command: build, then print as asked (and draw)."""
    if output_format not in FORMATS:
        raise UserError(f"--format {shown(output_format)} is not one of {', '.join(FORMATS)}")
    lineage = build(resolve_roots(reference))
    if png is not None:
        write_png(dot(lineage), png)
        print(f"wrote {png}", file=sys.stderr)
    on_terminal = output_format == "auto" and sys.stdout.isatty()
    if on_terminal:  # people's tables go to stderr, as every table of this CLI
        print(text(lineage), file=sys.stderr)
    elif output_format == "dot":
        sys.stdout.write(dot(lineage))
    elif output_format == "text":
        sys.stdout.write(text(lineage) + "\n")
    else:
        sys.stdout.write(json.dumps(lineage.as_dict() | ({"png": str(png)} if png else {})) + "\n")
    sys.stdout.flush()
    return 0
