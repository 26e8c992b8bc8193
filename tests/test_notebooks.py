"""Every numbered notebook: well-formed, clean, and runnable by papermill in smoke mode."""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COMMON_PARAMETERS = {"dataset", "epochs", "lr", "batch_size", "seed", "device", "smoke", "output_dir",
                     "checkpoint_dir"}


def _parameters_cells(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_the_core_sequence_exists():
    names = [p.name for p in NOTEBOOKS]
    assert names[:1] == ["01_teacher_training.ipynb"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata, f"{path.name} carries papermill's run record: run make clean-notebooks"
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: the parameters cell holds only `name = literal` lines"
        ast.literal_eval(node.value)  # raises unless the value is a literal
        names.add(node.targets[0].id)
    assert COMMON_PARAMETERS <= names, f"{path.name} lacks parameters {COMMON_PARAMETERS - names}"
    for line in cells[0].source.splitlines():
        assert "#" in line, f"{path.name}: every parameter needs a comment: {line!r}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} is committed with outputs"


@pytest.fixture(scope="module")
def shared_checkpoints(tmp_path_factory):
    # One folder for the whole module: notebook 01's smoke teacher is reused by 02+.
    return tmp_path_factory.mktemp("checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_smoke_run(path, tmp_path, shared_checkpoints):
    import papermill

    out = tmp_path / "out"
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), kernel_name="python3",
                               parameters={"smoke": True, "output_dir": str(out),
                                           "checkpoint_dir": str(shared_checkpoints)},
                               progress_bar=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and metrics["smoke"] is True
    assert list(out.glob("*.png")), "the notebook saves its figures"
    if path.name.startswith("01_"):
        import kdlab

        model, meta = kdlab.checkpoint.load(shared_checkpoints / "teacher_digits_smoke.pt")
        assert meta["test_metrics"]["accuracy"] == metrics["teacher_accuracy"]
    from kdlab import course
    from kdlab.experiments import unbacked_verdicts

    assert course.headline(path.stem, metrics), \
        f"{path.name} does not record every value its headline uses: {course.LESSONS[path.stem].headline!r}"
    # Every verdict the notebook printed was made by a kdlab.experiments helper (compare, best, fastest,
    # pareto), which records what it said in metrics.json: a hand-written "beats" or "tie" fails here.
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    hand_written = unbacked_verdicts(_printed(executed), metrics["verdicts"])
    assert not hand_written, f"{path.name} printed verdicts no kdlab.experiments helper made: {hand_written}"


def _printed(nb) -> str:
    """What the notebook's code cells printed (stdout) and the plain-text values they showed."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                parts.append(output["text"])
            elif output.get("output_type") in ("execute_result", "display_data"):
                parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


# --- the lesson format (issue "Notebooks that read as lessons") ---------------------------

# Plumbing a learner should not have to read past: parameter checks and result files.
PLUMBING = re.compile(r"validate|write_metrics|metrics\.json|lab\.start|\.record\(|smoke_mode|output_folder|"
                      r"DEFAULTS|at_defaults")
# Words of a release process or an acceptance review, not of a lesson.
PROCESS_WORDS = re.compile(r"quality bar|\bmet\b|this release|acceptance|\bbudget\b", re.IGNORECASE)
MAX_WORDS = 1500


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _code_lines(nb) -> list[str]:
    return [line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_as_a_lesson(path):
    from kdlab import course

    nb = nbformat.read(path, as_version=4)
    lesson = course.LESSONS[path.stem]
    # Word tokens: "teacher–scratch" and "01–03" count as two words, and the symbols of a formula count too.
    words = len(re.findall(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*", _markdown(nb)))
    assert words <= MAX_WORDS, f"{path.name} has {words} words of markdown; at most {MAX_WORDS}"
    found = PROCESS_WORDS.findall(_markdown(nb) + "\n".join(_code_lines(nb)))
    assert not found, f"{path.name} uses process language meant for reviews, not learners: {found}"
    plumbing = [line.strip() for line in _code_lines(nb) if PLUMBING.search(line)]
    assert len(plumbing) <= 3, f"{path.name} has {len(plumbing)} lines of plumbing: {plumbing}"
    assert f'kdlab.lab.start(globals(), "{path.stem}")' in "\n".join(_code_lines(nb)), \
        f"{path.name} must start with run = kdlab.lab.start(globals(), {path.stem!r})"
    last_code = [c for c in nb.cells if c.cell_type == "code"][-1].source.strip().splitlines()
    assert last_code[-1].startswith("run.record("), f"{path.name} must end with one run.record(...) line"
    title = nb.cells[0].source
    assert title.startswith(f"# {lesson.number} · {lesson.title}"), f"{path.name}'s title must match kdlab.course"
    assert "You will learn" in title, f"{path.name} states its objectives at the top"
    run_time = [line for line in title.splitlines() if "Run time" in line]
    assert len(run_time) == 1 and f"{lesson.minutes:.1f} min" in run_time[0], \
        f"{path.name}: one run-time line quoting kdlab.course's {lesson.minutes:.1f} min"
    markdown = _markdown(nb)
    assert "Summary" in markdown and "try next" in markdown.lower(), f"{path.name} ends with a summary and what to try next"
    # Markdown cannot format: a {name} placeholder would be shown to the learner as is.
    # Math spans ($...$, $$...$$) are left out: LaTeX groups such as \mathrm{KL} are braces too.
    prose = re.sub(r"\$\$.+?\$\$|\$[^$]+\$", " ", markdown, flags=re.S)
    assert not re.search(r"\{[A-Za-z_][\w.]*\}", prose), f"{path.name} shows a literal {{placeholder}} in markdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_predicts_before_a_key_result(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "predict" in c.get("metadata", {}).get("tags", [])]
    assert cells, f"{path.name} needs a cell tagged 'predict' where the learner writes a prediction"
    for cell in cells:
        assert cell.cell_type == "code" and re.search(r"^\w+ = None", cell.source, re.M), \
            f"{path.name}: a predict cell asks for a value in a variable that starts as None"
        name = re.search(r"^(\w+) = None", cell.source, re.M).group(1)
        later = nb.cells[nb.cells.index(cell) + 1:]
        assert any(name in c.source for c in later if c.cell_type == "code"), \
            f"{path.name}: the prediction {name} is never compared with the result"


def test_every_notebook_is_a_lesson_of_the_course():
    from kdlab import course

    assert [p.stem for p in NOTEBOOKS] == list(course.LESSONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_course_rules_and_smoke_values_fit_the_parameters(path):
    """Every rule and smoke value names a real parameter, and the defaults pass their rules."""
    from kdlab import course, lab

    lesson = course.LESSONS[path.stem]
    defaults = lab.notebook_defaults(path.stem)
    assert set(lesson.rules) <= set(defaults), f"rules for unknown parameters: {set(lesson.rules) - set(defaults)}"
    assert set(lesson.smoke) <= set(defaults), f"smoke values for unknown parameters: {set(lesson.smoke) - set(defaults)}"
    course.check_params(path.stem, defaults)
    course.check_params(path.stem, {**defaults, **lesson.smoke})
    for key, value in lesson.smoke.items():
        assert type(value) is type(defaults[key]), f"smoke value {key}={value!r} has another type than its default"


# --- no results in markdown (issue "Every claim holds in its own output") -----------------

# A result-like number: a percentage, percentage points, a ratio ("3.9×", not a shape such as 784×800),
# or a time. Markdown says what to look for; the code prints what was found.
RESULT_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)\s?(%|pp\b|×(?!\s?\d)|ms\b|s\b|sec\b|seconds?\b|min\b|"
                           r"minutes?\b|h\b|hours?\b)")
# A sentence quoting a paper names it: "Hinton et al. (2015)", "(Guo et al., 2017)", "arXiv:1503.02531".
CITATION = re.compile(r"et al\.|\b(?:19|20)\d{2}\b|arXiv")
# Constants of the method, not results: the confidence level of every interval.
NOT_RESULTS = re.compile(r"\b95% (?:CI|confidence|interval)")


def _sentences(text: str) -> list[str]:
    # Split after . ! ? (or at blank lines and list items), but not after "et al." or "e.g.".
    text = re.sub(r"(et al|e\.g|i\.e|vs|cf)\.", r"\1<dot>", text)
    return [s.replace("<dot>", ".") for s in re.split(r"(?<=[.!?])\s+|\n\s*\n|\n\s*[-*] ", text) if s.strip()]


def _parameter_numbers(path) -> set[float]:
    """Every number in the notebook's parameters cell (lists flattened), as written and as a percentage."""
    from kdlab import lab

    found = set()

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            found.update({float(value), round(100 * float(value), 6)})
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for value in lab.notebook_defaults(path.stem).values():
        walk(value)
    return found


def result_numbers_in_markdown(path) -> list[str]:
    """Sentences of the notebook's markdown that state a result-like number that is neither quoted from a
    paper (a citation in the same sentence), nor a parameter value, nor the course's run time."""
    from kdlab import course

    nb = nbformat.read(path, as_version=4)
    allowed = _parameter_numbers(path)
    minutes = course.LESSONS[path.stem].minutes
    bad = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"`[^`]*`", " ", cell.source)  # code spans: names and parameter values
        text = NOT_RESULTS.sub(" ", text)
        for sentence in _sentences(text):
            if CITATION.search(sentence):
                continue
            for match in RESULT_NUMBER.finditer(sentence):
                number = float(match.group(1).replace(",", ""))
                if number in allowed:
                    continue
                if "Run time" in sentence and number == minutes and match.group(2).startswith("min"):
                    continue
                bad.append(f"{match.group(0)!r} in: {sentence.strip()[:160]}")
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_states_no_results(path):
    bad = result_numbers_in_markdown(path)
    assert not bad, (f"{path.name}: markdown states results; print them from code instead (or cite the paper in "
                     f"the same sentence, or write a parameter in backticks): " + "; ".join(bad))


def test_the_markdown_check_catches_results_and_spares_quotes_and_parameters(tmp_path, monkeypatch):
    """The check above can fail: a results sentence is caught; a citation, a parameter and the run time are not."""
    src = ROOT / "notebooks" / "04_student_comparison.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell(
        "The distilled student gained 0.68 pp. It ran 3.9× faster, in 12 s. Hinton et al. (2015) closed 90% of "
        "the gap. We use T = 4 and keep 90% of the images. Each interval is a 95% CI."))
    monkeypatch.setenv("KDLAB_NOTEBOOKS", str(tmp_path))
    copy = tmp_path / src.name
    nbformat.write(nb, copy)
    found = result_numbers_in_markdown(copy)
    assert [f.split(" in: ")[0] for f in found] == ["'0.68 pp'", "'3.9×'", "'12 s'"], found


def test_no_headline_states_a_verdict_by_hand():
    """run.record prints each lesson's headline; verdict words belong to the helpers, not to templates."""
    from kdlab import course
    from kdlab.experiments import VERDICT_WORDS

    for name, lesson in course.LESSONS.items():
        assert not VERDICT_WORDS.search(lesson.headline), f"{name}'s headline states a verdict: {lesson.headline!r}"
