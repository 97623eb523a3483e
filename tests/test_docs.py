"""The documentation: README.md stays short and its links resolve; the docs/ site builds
with ``mkdocs build --strict`` (a broken link or anchor between pages fails it); no
tracked file cites the design notes that live outside the repository.

mkdocs turns a warning into an error under ``--strict``; ``mkdocs.yml``'s ``validation:``
raises missing link targets and anchors to warnings, so both fail the build. Links from a
docs page to a repository file outside docs/ (a benchmark result, a config) start with
``/`` (the repository root, as GitHub resolves them); mkdocs leaves those alone and
:func:`test_repository_links_resolve` checks them instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
# Markdown inline links and images: [text](target) / ![alt](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Spelled in two parts so that this file does not cite it itself.
DESIGN_NOTES = "DESIGN" + ".md"
CHECKED_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".cfg", ".toml", ".ipynb")


def links(markdown: str) -> list[str]:
    """Link targets of a Markdown text, fenced code blocks left out."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return LINK.findall(text)


def repository_file(target: str, relative_to: Path) -> Path | None:
    """The repository path a link names, or None for external links and pure anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
        return None
    path = target.split("#", 1)[0].split("?", 1)[0]
    return REPO / path.lstrip("/") if path.startswith("/") else relative_to / path


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        capture_output=True, text=True, timeout=120, cwd=config.parent, check=False,
    )


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/")


def test_readme_links_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    targets = links(readme)
    assert any(t.startswith("docs/") for t in targets), "README.md links no docs/ page"
    missing = [t for t in targets
               if (path := repository_file(t, REPO)) is not None and not path.exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def headings(markdown: str) -> set[str]:
    """The anchors mkdocs gives a page's headings (the ``toc`` extension's default slugs)."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return {slugify(title, "-") for title in re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.MULTILINE)}


def test_readme_anchors_into_docs_exist():
    """README.md is not part of the site, so mkdocs does not check its anchors: this does."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = []
    for target in links(readme):
        path, _, anchor = target.partition("#")
        page = REPO / path
        if (anchor and path.startswith("docs/") and path.endswith(".md")
                and anchor not in headings(page.read_text(encoding="utf-8"))):
            missing.append(target)
    assert not missing, f"README.md links headings that do not exist: {missing}"


def test_repository_links_resolve():
    """Links from docs pages to repository files (``/benchmarks/…``) name real files."""
    missing = []
    for page in sorted((REPO / "docs").glob("*.md")):
        for target in links(page.read_text(encoding="utf-8")):
            path = repository_file(target, page.parent)
            if path is not None and not path.exists():
                missing.append(f"{page.name}: {target}")
    assert not missing, f"links to files that do not exist: {missing}"


def test_docs_build_strict(tmp_path):
    result = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-3000:]}"
    assert (tmp_path / "site" / "design" / "index.html").exists()
    # The API reference is rendered from the source: a loss, a method and an evaluator have
    # their own entries (mkdocstrings anchors by dotted name).
    api = {page: (tmp_path / "site" / "api" / page / "index.html").read_text(encoding="utf-8")
           for page in ("losses", "methods", "evaluate")}
    assert 'id="burn_tf.losses.distillation.burn_loss"' in api["losses"]
    assert 'id="burn_tf.methods.burn.BURN"' in api["methods"]
    assert 'id="burn_tf.evaluate.knn.knn"' in api["evaluate"]


def test_api_reference_lists_every_module():
    """docs/api/ is what scripts/api_reference.py writes for today's modules: a module added,
    moved or removed without rewriting the pages fails here."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "api_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("broken", ["[a page](no_such_page.md)", "[an anchor](design.md#no-such-heading)"])
def test_docs_build_fails_on_a_broken_link(tmp_path, broken):
    """The strict build is a real check: one broken link or anchor in a copy of the docs
    makes it fail, naming the target."""
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    (tmp_path / "burn_tf").symlink_to(REPO / "burn_tf")  # the API reference reads the source beside mkdocs.yml
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\n{broken}\n", encoding="utf-8")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert broken.split("(")[1].rstrip(")").split("#")[-1] in result.stderr


def test_no_file_cites_the_design_notes():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to check")
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    citing = [name for name in tracked if name.endswith(CHECKED_SUFFIXES)
              and DESIGN_NOTES in (REPO / name).read_text(encoding="utf-8", errors="replace")]
    assert not citing, f"these files cite {DESIGN_NOTES}, which is not in the repository: {citing}"
