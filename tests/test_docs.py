"""The docs agree with the committed results and with the tree: every generated table matches its
``results.json`` (``python docs/generate.py`` rewrites them), every relative link points at a file
that exists, and the README stays a front door."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_tables_match_the_committed_results():
    assert _generate().out_of_date() == [], "run python docs/generate.py"


def test_a_table_edited_by_hand_is_caught():
    gen = _generate()
    page, make = gen.BLOCKS["eval-lfw"]
    text = (ROOT / page).read_text()
    fresh = gen.render(text, "eval-lfw", make())
    assert fresh == text
    edited = text.replace("| Unprotected | 99.13", "| Unprotected | 99.99", 1)
    assert edited != text and gen.render(edited, "eval-lfw", make()) != edited
    with pytest.raises(ValueError, match="markers"):
        gen.render("no markers here", "eval-lfw", make())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_at_files_that_exist(page: Path):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    missing = [x for x in links if "://" not in x and not (page.parent / x).exists()]
    assert missing == []


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, page.name


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move depth into docs/"
    text = "\n".join(lines)
    for command in ("make demo", "make test"):
        assert command in text
