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

    assert course.headline(path.stem, metrics), \
        f"{path.name} does not record every value its headline uses: {course.LESSONS[path.stem].headline!r}"


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
    words = len(_markdown(nb).split())
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
