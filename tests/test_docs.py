"""The README is a short landing page whose links work and whose run times come from kdlab.course."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
INSTRUCTORS = ROOT / "docs" / "INSTRUCTORS.md"
MARKDOWN_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]

README_LIMIT = 8_000  # characters: a landing page, with the details in docs/

# [text](target) and [text](target "title"); images ![alt](target) match too.
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (reference-style definitions)
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", flags=re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.I)  # http:, https:, mailto:, ...


def _without_code(text: str) -> str:
    """Text with fenced code blocks and inline code removed: code is not a link."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(text: str) -> list[str]:
    """Relative link targets in Markdown ``text``, anchors removed; external and same-page links skipped."""
    prose = _without_code(text)
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    paths = [t.split("#", 1)[0] for t in targets if not EXTERNAL.match(t)]
    return [p for p in paths if p]


def test_relative_links_finds_links_and_skips_code_anchors_and_urls():
    text = ("See [a](docs/A.md#part), ![fig](img/x.png \"title\") and [b][1].\n"
            "[1]: other/B.md\n[c](https://example.org/x.md) [d](#local) `[e](in/code.md)`\n"
            "```python\nx = y[0](z.md)\n```\n")
    assert relative_links(text) == ["docs/A.md", "img/x.png", "other/B.md"]


def test_readme_is_a_short_landing_page():
    n = len(README.read_text(encoding="utf-8"))
    assert n <= README_LIMIT, (f"README.md has {n} characters, more than {README_LIMIT}: "
                               "move details into docs/ and link them")


def test_readme_has_no_release_language():
    text = README.read_text(encoding="utf-8")
    found = [w for w in (r"quality bar", r"this release", r"\bmet\b") if re.search(w, text, flags=re.I)]
    assert not found, f"README.md reads like a release report ({found}); results belong in docs/RESULTS.md"


def test_every_relative_markdown_link_points_to_an_existing_file():
    broken = []
    for md in MARKDOWN_FILES:
        for target in relative_links(md.read_text(encoding="utf-8")):
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_readme_links_every_doc():
    links = set(relative_links(README.read_text(encoding="utf-8")))
    for doc in ("RESULTS", "BENCHMARKS", "RELIABILITY", "INSTRUCTORS", "ARCHITECTURE"):
        assert f"docs/{doc}.md" in links, f"README.md does not link docs/{doc}.md"


def test_readme_names_every_notebook():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 9, notebooks
    text = README.read_text(encoding="utf-8")
    missing = [nb for nb in notebooks if nb not in text]
    assert not missing, f"README.md does not name {missing}"


MINUTES = re.compile(r"\b\d+\.\d min\b")


def test_run_times_in_readme_and_instructors_come_from_the_course():
    from kdlab import course  # the one source of run times; no skip: the docs must quote it

    assert course.LESSONS, "kdlab.course.LESSONS is empty"
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(course.LESSONS) == notebooks, "kdlab.course.LESSONS and notebooks/ list different notebooks"
    wrong = []
    for doc in (README, INSTRUCTORS):
        lines = doc.read_text(encoding="utf-8").splitlines()
        for stem, lesson in course.LESSONS.items():
            want = f"{lesson.minutes:.1f} min"
            # Every line that names the notebook and quotes a run time must quote this one.
            quoted = [line.strip() for line in lines if stem in line and MINUTES.search(line)]
            if not quoted:
                wrong.append(f"{doc.name}: no line names {stem} with its run time {want!r}")
            wrong += [f"{doc.name}: expected {want!r} for {stem}: {line}" for line in quoted if want not in line]
    assert not wrong, "run times disagree with kdlab.course.LESSONS:\n" + "\n".join(wrong)


CATALOGUE_ROW = re.compile(r"^\| `(\d\d_\w+)` \| `(\w+)` \| (\d+) \| (.+) \|$", flags=re.M)


def test_the_exercise_catalogue_in_instructors_matches_kdlab_classroom():
    from kdlab.classroom import EXERCISES  # the one source of the exercises; the table quotes it

    text = INSTRUCTORS.read_text(encoding="utf-8")
    found = [(nb, ex, int(points)) for nb, ex, points, _ in CATALOGUE_ROW.findall(text)]
    want = [(ex.notebook, ex.id, ex.points) for ex in EXERCISES]
    rows = "\n".join(f"| `{nb}` | `{ex}` | {points} | <what it checks> |" for nb, ex, points in want)
    assert found == want, f"docs/INSTRUCTORS.md's exercise catalogue disagrees with kdlab.classroom; its rows:\n{rows}"
    assert all(what.strip() for *_, what in CATALOGUE_ROW.findall(text)), "every exercise says what it checks"
    assert f"{sum(ex.points for ex in EXERCISES)} points in all" in text


def test_instructors_says_grading_is_isolation_not_a_sandbox():
    text = " ".join(INSTRUCTORS.read_text(encoding="utf-8").split())
    assert "Isolation, not a security sandbox" in text and "user rights" in text
    assert "def my_" not in text, "the solutions live in the catalogue, not in docs that students can read"
