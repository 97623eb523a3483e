"""Writes the API reference pages of the docs site, one page per room of ``burn_tf``.

    python scripts/api_reference.py          # rewrites docs/api/*.md
    python scripts/api_reference.py --check  # exit 1 when the pages differ from what it would write

Each page lists the room's modules as mkdocstrings ``:::`` blocks (rendered from the source by
griffe; nothing is imported), so every module of the package has its reference and a module
added to a room appears after one run. tests/test_docs.py runs ``--check``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "burn_tf"
API_DIR = REPO / "docs" / "api"

# Room → (page title, what the room holds). Top-level modules that are neither a subpackage nor
# listed here go on the "core" page.
ROOMS = {
    "data": ("Data", "sources, the view config and its ops, the N-view pipeline, evaluation images, composites"),
    "models": ("Models", "ReActNet-A, larq-zoo students, the trained network, FP teacher architectures, heads"),
    "convert": ("Convert", "PyTorch checkpoints → Keras weights; pretrained teachers"),
    "losses": ("Losses", "pure loss functions, one family a module"),
    "ops": ("Ops", "schedules, collapse diagnostics, targets, queue/EMA/bank updates, clustering"),
    "methods": ("Methods", "the method base, its two middle layers, one module per method"),
    "core": ("Configuration, pretraining and the run", "configs, the stage loop, building a stage, run "
             "directories, distribution, callbacks, progress, the saved-backbone format, bit-op counts"),
    "export": ("Export", ".keras, SavedModel, LCE .tflite, the model card"),
    "evaluate": ("Evaluate", "the downstream evaluators, one module per task, and what they share"),
    "studies": ("Studies", "the demo, the ablation and the method comparison, built on the library"),
}


def modules() -> dict[str, list[str]]:
    """Room → dotted names of its modules (no ``__main__``), in path order."""
    by_room: dict[str, list[str]] = {room: [] for room in ROOMS}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__" or (parts[-1] == "__init__" and len(parts) == 2):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        room = parts[1] if len(parts) > 2 else "core"
        by_room[room].append(name)
    return by_room


def pages() -> dict[str, str]:
    out = {}
    for room, names in modules().items():
        title, holds = ROOMS[room]
        blocks = "\n".join(f"::: {name}\n" for name in names)
        out[f"{room}.md"] = f"# {title}\n\n`{room}`: {holds}.\n\n{blocks}"
    index = ["# API reference", "",
             "Generated from the docstrings by `python scripts/api_reference.py`, one page per room "
             "([Design](../design.md) says which room owns what):", ""]
    index += [f"- [{ROOMS[room][0]}]({room}.md): {ROOMS[room][1]}" for room in ROOMS]
    out["index.md"] = "\n".join(index) + "\n"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/api/ is out of date")
    args = parser.parse_args(argv)
    wanted = pages()
    if args.check:
        stale = sorted(name for name, text in wanted.items()
                       if not (API_DIR / name).exists() or (API_DIR / name).read_text() != text)
        extra = sorted(p.name for p in API_DIR.glob("*.md") if p.name not in wanted) if API_DIR.exists() else []
        if stale or extra:
            print(f"docs/api is out of date ({', '.join(stale + extra)}): run python scripts/api_reference.py")
            return 1
        return 0
    API_DIR.mkdir(exist_ok=True)
    for stale in API_DIR.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (API_DIR / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
