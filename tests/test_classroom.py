"""The classroom edition (issue 16, stage 1): the exercise catalogue, student and instructor
notebooks from one source, the autograder, honest credit, hints and solutions, ``release``.

Most tests run the exercises' grade functions directly on fixed inputs (milliseconds);
the ``slow`` ones run instructor notebooks in smoke mode, as ``kdlab classroom release`` does.
"""

from __future__ import annotations

import ast
import copy
import re
import types
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

import kdlab
from kdlab import cli, course
from kdlab.checks import hints
from kdlab.classroom import (CODE_STUB, EXERCISES, Grade, GradeError, autograde, cells, exercise, honesty,
                             instructor_notebook, of_notebook, release, student_notebook, with_hidden_tests)
from kdlab.classroom.release import ReleaseError, verify_executed
from kdlab.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BY_ID = {ex.id: ex for ex in EXERCISES}


def _namespace() -> dict:
    """What the answer and check cells may use: the notebooks' imports, and 01's and 02's variables."""
    cm = torch.eye(10, dtype=torch.long) * 50
    cm[4, 9], cm[9, 4], cm[3, 5] = 7, 2, 3  # one most confused pair, 4 -> 9, not symmetric
    y = torch.repeat_interleave(torch.arange(10), cm.sum(1))  # the true classes, row by row
    pred = torch.cat([torch.repeat_interleave(torch.arange(10), cm[i]) for i in range(10)])
    ds = types.SimpleNamespace(class_names=[str(i) for i in range(10)], num_classes=10,
                               test=types.SimpleNamespace(y=y))
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0)) * 3
    return {"torch": torch, "F": F, "kdlab": kdlab, "copy": copy, "cm": cm, "ds": ds, "pred": pred,
            "logits": logits}


def _run(source: str, namespace: dict | None = None) -> dict:
    namespace = _namespace() if namespace is None else namespace
    exec(compile(source, "<answer cell>", "exec"), namespace)  # noqa: S102 - the test's own code
    return namespace


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    """Each test starts as a new kernel would: no hints shown, no attempts recorded."""
    monkeypatch.setattr(hints, "_attempted", set())
    monkeypatch.setattr(hints, "_hints_shown", {})


# --- the catalogue -----------------------------------------------------------------------------

def _exercise_cells(nb):
    return [(i, cells.role(c)) for i, c in enumerate(nb.cells) if cells.role(c)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_catalogue_lists_exactly_the_exercises_of_each_notebook(path):
    nb = nbformat.read(path, as_version=4)
    found = _exercise_cells(nb)
    answers = [ex_id for _, (ex_id, role) in found if role == "answer"]
    assert answers == [ex.id for ex in of_notebook(path.stem)], f"{path.name}: cells {answers}"
    for (i, (ex_id, role)), (j, (next_id, next_role)) in zip(found[::2], found[1::2]):
        assert (role, next_role, next_id, j) == ("answer", "test", ex_id, i + 1), \
            f"{path.name}: {ex_id}'s answer cell must be followed by its test cell"
    # Every formative check of the notebook belongs to a catalogued exercise's test cell.
    calls = {c.source for c in nb.cells if c.cell_type == "code" and "kdlab.checks.check_" in c.source}
    assert calls == {BY_ID[ex_id].check for _, (ex_id, role) in found if role == "test"}


def test_every_exercise_belongs_to_a_lesson_and_ids_are_unique():
    assert len(BY_ID) == len(EXERCISES) == 26
    assert {ex.notebook for ex in EXERCISES} == set(course.LESSONS)
    order = list(course.LESSONS)
    assert [order.index(ex.notebook) for ex in EXERCISES] == sorted(order.index(ex.notebook) for ex in EXERCISES)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_every_exercise_has_a_solution_hints_points_and_tests(ex):
    assert re.fullmatch(r"[a-z0-9_]+", ex.id)
    assert ex.solution.strip() and callable(ex.tests)
    assert 1 <= len(ex.hints) <= 2 and all(h.strip() for h in ex.hints)
    low, high = (2, 5) if ex.is_function else (1, 3)
    assert isinstance(ex.points, int) and low <= ex.points <= high
    assert [line.strip() for line in ex.stub.splitlines()].count(CODE_STUB) == 1
    assert ex.answer in ex.check
    for reference in ex.references:  # every reference names a real function or a notebook variable
        assert "." not in reference or callable(honesty.resolve(reference)[2])


# --- one source of truth: notebooks/ is the student version -----------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_the_student_versions_of_the_catalogue(path):
    nb = nbformat.read(path, as_version=4)
    instructor = instructor_notebook(nb)
    assert student_notebook(instructor) == nb, f"{path.name} is out of sync with kdlab.classroom's catalogue"
    for cell in nb.cells:
        found = cells.role(cell)
        if found:
            ex = exercise(found[0])
            want = (ex.stub, cells.answer_metadata(ex)) if found[1] == "answer" else (ex.check, cells.test_metadata(ex))
            assert (cell.source, {k: cell.metadata[k] for k in ("nbgrader", "kdlab")}) == want
    assert cells.nbgrader_problems(nb) == [] and cells.nbgrader_problems(instructor) == []


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_the_instructor_cells_carry_the_marked_solution_and_hidden_tests(ex):
    answer = cells.instructor_answer(ex)
    assert "### BEGIN SOLUTION" in answer and "### END SOLUTION" in answer
    assert cells.clear_solutions(answer) == ex.stub
    test = cells.instructor_test(ex)
    assert f'kdlab.classroom.autograde("{ex.id}", globals())' in test
    assert cells.clear_hidden_tests(test) == ex.check
    first = ex.solution.strip().splitlines()[0].strip()
    assert first not in ex.stub, "the stub must not give the solution away"
    ast.parse(answer), ast.parse(test), ast.parse(ex.solved_source())


def test_with_hidden_tests_keeps_a_submissions_answers_and_resets_its_test_cells():
    nb = nbformat.read(ROOT / "notebooks" / "03_temperature.ipynb", as_version=4)
    answer = next(c for c in nb.cells if cells.role(c) == ("kd_loss", "answer"))
    answer.source = "def my_kd_loss(s, t, T):\n    return s.sum()"
    test = next(c for c in nb.cells if cells.role(c) == ("kd_loss", "test"))
    test.source = "pass  # a student edited the locked test cell"
    graded = with_hidden_tests(nb)
    assert next(c for c in graded.cells if cells.role(c) == ("kd_loss", "answer")).source == answer.source
    assert next(c for c in graded.cells if cells.role(c) == ("kd_loss", "test")).source == \
        cells.instructor_test(BY_ID["kd_loss"])


def test_nbgrader_problems_are_found():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    assert "not a solution cell" in " ".join(cells.nbgrader_problems(nb))
    nb.cells[0].metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "grade_id": "a b",
                                        "schema_version": 3}
    problems = " ".join(cells.nbgrader_problems(nb))
    assert "grade_id" in problems and "points" in problems


# --- the autograder on fixed inputs ------------------------------------------------------------

@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_the_solution_passes_its_check_and_gets_every_point(ex, capsys):
    ns = _run(ex.solved_source())
    _run(ex.check, ns)
    assert "✅" in capsys.readouterr().out
    grade = ex.grade(ns, source=ex.solved_source())
    assert grade == Grade(ex.points, ex.points, grade.feedback, ex.id) and "Correct" in grade.feedback, grade
    returned = autograde(ex.id, ns)
    assert returned.points == ex.points and Grade.parse(capsys.readouterr().out) == returned


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_the_stub_gets_no_points_and_is_not_done(ex, capsys):
    ns = _run(ex.stub)
    _run(ex.check, ns)  # the check cell runs without raising
    assert "Not done yet" in capsys.readouterr().out
    grade = ex.grade(ns)
    assert grade.points == 0 and grade.feedback.startswith("Not done yet"), grade
    with pytest.raises(AssertionError, match="Not done yet") as raised:
        autograde(ex.id, ns)
    assert isinstance(raised.value, GradeError) and raised.value.grade == grade
    assert ex.grade({}).points == 0 and "not defined" in ex.grade({}).feedback


# One wrong answer per exercise: the usual mistake, named in the feedback.
WRONG = {
    "accuracy": ("return 100 * (logits.argmax(1) == targets).float().mean().item()", "percentage"),
    "most_confused": (None, "wrong way round"),
    "soft_targets": ("return torch.softmax(logits, dim=1)", "forgot to divide by T"),
    "entropy_bits": ("return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)", "nats"),
    "kd_loss": ("return F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction='batchmean')",
                "T² factor is missing"),
    "gap_closed": ("return 100 * (student - scratch) / (teacher - scratch)", "percentage"),
    "ece": ("conf, pred = probs.max(1)\n    return abs((pred == targets).float().mean() - conf.mean()).item()",
            "one bin"),
    "stratified_fraction": ("g = torch.Generator().manual_seed(seed)\n"
                            "    return torch.randperm(len(labels), generator=g)[:round(fraction * len(labels))]",
                            "stratify"),
    "shift_bias": ("with torch.no_grad():\n        model.output_layer.bias[cls] += offset\n    return model",
                   "changed the original model"),
    "pseudo_labels": ("return teacher_logits.argmin(dim=1)", "argmin"),
    "discriminator_loss": ("return (F.binary_cross_entropy_with_logits(r, torch.zeros_like(r))\n"
                           "            + F.binary_cross_entropy_with_logits(f, torch.ones_like(f)))", "swapped"),
    "discriminator_accuracy": ("return (r > 0).float().sum(), (f <= 0).float().sum()", "counts"),
    "conditioned_input": ("return torch.cat([probs, F.one_hot(targets, num_classes).float()], dim=0)",
                          "stacked along the batch"),
    "filter_l1": ("return weight.flatten(1).norm(dim=1)", "L2 norm"),
    "slice_conv": ("return weight[out_idx]", "not the input channels"),
    "kept_fraction": ("return sum(p.numel() for p in teacher.parameters()) / sum(p.numel() for p in "
                      "student.parameters())", "divided the teacher"),
    "leaf_paths": ("root, left, right = p_right[:, 0], p_right[:, 1], p_right[:, 2]\n"
                   "    return torch.stack([root * right, root * (1 - right), (1 - root) * left, "
                   "(1 - root) * (1 - left)], 1)", "wrong way round"),
    "balance_penalty": ("alpha = (reach * p_right).sum(0) / reach.sum(0)\n"
                        "    return (-0.5 * torch.log(4 * alpha * (1 - alpha))).sum()", "decay"),
    "global_sparsity": ("w = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]\n"
                        "    return sum(int((x != 0).sum()) for x in w) / sum(x.numel() for x in w)", "NON-zero"),
    "pareto_front": ("front = [p for p in points if not any(q[0] <= p[0] and q[1] >= p[1] and q != p "
                     "for q in points)]\n    return sorted(front, reverse=True)", "not in order"),
    "reverse_kl": ("return F.kl_div(F.log_softmax(student_logits, -1), F.softmax(teacher_logits, -1), "
                   "reduction='batchmean')", "forward KL"),
    "sequence_kd_loss": ("return F.kl_div(F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits / T, -1), "
                         "reduction='batchmean') * T * T", "divided by the batch size B only"),
    "temperature_sampler": ("if temperature == 0:\n        return logits.argmax(-1)\n    return torch.multinomial("
                            "torch.softmax(logits * temperature, -1), 1, generator=generator).squeeze(-1)",
                            "multiplied the logits by T"),
    "attention_map": ("return F.normalize(features.pow(p).mean(1).flatten(1), dim=0)", "normalised over the batch"),
    "dkd_terms": ("return kdlab.losses.kd_loss(student_logits, teacher_logits, T), "
                  "kdlab.losses.kd_loss(student_logits, teacher_logits, T)", "one value per example"),
}

# Answers the formative check accepts but the autograder does not: it tries more.
ONLY_THE_AUTOGRADER_CATCHES = {
    "kd_loss": ("return torch.tensor((F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), "
                "reduction='batchmean') * T * T).item())", "No gradient"),
    "soft_targets": ("return torch.softmax(logits / T, dim=-1).detach()", "No gradient"),
    "conditioned_input": ("return torch.cat([probs, F.one_hot(targets).float()], dim=1)", "num_classes"),
    "stratified_fraction": ("g = torch.Generator().manual_seed(seed)\n    out = []\n    for c in range(3):\n"
                            "        m = (labels == c).nonzero().flatten()\n"
                            "        k = max(1, round(fraction * len(m)))\n"
                            "        out.append(m[torch.randperm(len(m), generator=g)[:k]])\n"
                            "    return torch.cat(out)", "labels.unique()"),
    "global_sparsity": ("kinds = (torch.nn.Linear, torch.nn.Conv2d)\n"
                        "    w = [m.weight for m in model.modules() if isinstance(m, kinds)]\n"
                        "    return sum(int((x == 0).sum()) for x in w) / sum(x.numel() for x in w)",
                        "Linear weights only"),
    "filter_l1": ("return weight.abs_().sum(dim=(1, 2, 3))", "changed the weight"),
    "balance_penalty": ("alpha = (reach * p_right).sum(0) / reach.sum(0)\n    decay = torch.tensor([1.0, 0.5, 0.5])\n"
                        "    return (decay * -0.5 * torch.log(4 * alpha * (1 - alpha))).sum()", "RuntimeError"),
    "gap_closed": ("return abs(student - scratch) / (teacher - scratch)", "worse than scratch"),
    "sequence_kd_loss": ("log_s, p_t = F.log_softmax(student_logits / T, -1), F.softmax(teacher_logits / T, -1)\n"
                         "    kl = F.kl_div(log_s, p_t, reduction='none').sum(-1)[mask]\n"
                         "    return torch.tensor(kl.mean().item() * T * T)", "No gradient"),
    "attention_map": ("q = features.abs().pow(p).mean(1).flatten(1)\n    return q / q.norm(dim=1, keepdim=True)",
                      "dead ReLU layer"),
    "dkd_terms": ("B, K = student_logits.shape\n    m = F.one_hot(targets, K).bool()\n"
                  "    ps, pt = F.softmax(student_logits / T, 1), F.softmax(teacher_logits / T, 1)\n"
                  "    bs = torch.stack([ps[m], 1 - ps[m]], 1)\n    bt = torch.stack([pt[m], 1 - pt[m]], 1)\n"
                  "    tckd = (bt * (bt.log() - bs.log())).sum(1) * T * T\n"
                  "    qs = F.log_softmax(student_logits[~m].view(B, K - 1) / T, 1)\n"
                  "    qt = F.log_softmax(teacher_logits[~m].view(B, K - 1) / T, 1)\n"
                  "    return tckd, (qt.exp() * (qt - qs)).sum(1) * T * T", "sure of its answer"),
}


def _function_source(ex, body: str) -> str:
    head = next(line for line in ex.stub.splitlines() if line.startswith(f"def {ex.answer}("))
    params = ast.parse(head + "\n    pass").body[0].args.args
    names = {"kd_loss": "s, t, T", "discriminator_loss": "r, f", "discriminator_accuracy": "r, f"}
    signature = names.get(ex.id, ", ".join(a.arg for a in params))
    return f"def {ex.answer}({signature}):\n    {body}"


@pytest.mark.parametrize("exercise_id", list(WRONG))
def test_a_wrong_answer_gets_no_points_and_the_mistake_is_named(exercise_id):
    ex = BY_ID[exercise_id]
    body, phrase = WRONG[exercise_id]
    source = ("answer = ('9', '4')  # reversed" if body is None else _function_source(ex, body))
    grade = ex.grade(_run(source), source=source)
    assert grade.points == 0 and phrase in grade.feedback, grade


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
@pytest.mark.parametrize("exercise_id", list(ONLY_THE_AUTOGRADER_CATCHES))
def test_the_autograder_checks_more_than_the_formative_check(exercise_id, capsys):
    ex = BY_ID[exercise_id]
    body, phrase = ONLY_THE_AUTOGRADER_CATCHES[exercise_id]
    ns = _run(_function_source(ex, body))
    _run(ex.check, ns)
    assert "✅" in capsys.readouterr().out, "the formative check accepts this answer"
    grade = ex.grade(ns)
    assert grade.points == 0 and phrase in grade.feedback, grade


def test_the_most_confused_answer_must_be_class_names_and_cm_must_be_left_alone():
    ex = BY_ID["most_confused"]
    assert ex.grade(_run("answer = (4, 9)")).points == 0
    assert "not indices" in ex.grade(_run("answer = (4, 9)")).feedback
    source = "cm.fill_diagonal_(0)\nanswer = ('4', '9')"
    assert "in place" in ex.grade(_run(source), source=source).feedback
    assert ex.grade(_run("answer = ['4', '9']")).points == 2


# --- honest credit --------------------------------------------------------------------------------

DELEGATE = {
    "most_confused": None,
    "soft_targets": "kdlab.losses.soft_targets(logits, T)",
    "entropy_bits": "kdlab.losses.entropy(p)",
    "kd_loss": "kdlab.losses.kd_loss(s, t, T)",
    "gap_closed": "kdlab.experiments.gap_closed(student, scratch, teacher)",
    "ece": "kdlab.metrics.reliability(probs, targets, 15)['ece']",
    "stratified_fraction": "kdlab.data.stratified_indices(labels, fraction, seed)",
    "shift_bias": "kdlab.transfer.shift_bias(model, cls, offset)",
    "pseudo_labels": "kdlab.transfer.hard_pseudo_labels(teacher_logits)",
    "discriminator_loss": "kdlab.adversarial.discriminator_loss(r, f)",
    "discriminator_accuracy": "kdlab.adversarial.discriminator_accuracy(r, f)",
    "conditioned_input": "kdlab.adversarial.conditioned_input(probs, targets, num_classes)",
    "filter_l1": "kdlab.transplant.l1_scores(weight)",
    "slice_conv": "kdlab.transplant.slice_weight(weight, out_idx, in_idx)",
    "kept_fraction": "kdlab.transplant.kept_fraction(student, teacher)",
    "leaf_paths": "kdlab.interpretable.path_probabilities(p_right)",
    "balance_penalty": "kdlab.interpretable.balance_penalty(p_right, reach, depths)",
    "global_sparsity": "kdlab.compress.sparsity(model)",
    "pareto_front": "kdlab.compress.pareto_front(points)",
    "fix_kd_loss": "kdlab.losses.kd_loss(student_logits, teacher_logits, T)",
    "reverse_kl": "kdlab.losses.reverse_kl_loss(student_logits, teacher_logits, 1.0)",
    "sequence_kd_loss": "kdlab.losses.kd_loss(student_logits, teacher_logits, T, mask=mask)",
    "temperature_sampler": "kdlab.lm.sample_next(logits, temperature, generator)",
    "attention_map": "kdlab.losses.attention_map(features, p)",
    "dkd_terms": "kdlab.losses.decoupled_kd_terms(student_logits, teacher_logits, targets, T)",
}


def test_every_exercise_with_a_reference_is_covered():
    assert set(DELEGATE) == {ex.id for ex in EXERCISES if ex.references}


@pytest.mark.parametrize("exercise_id", list(DELEGATE))
def test_an_answer_that_calls_the_kits_version_gets_no_points(exercise_id, capsys):
    ex = BY_ID[exercise_id]
    if DELEGATE[exercise_id] is None:
        source = "answer = tuple(kdlab.metrics.most_confused_pairs(cm, 1, ds.class_names)[0][:2])"
    else:
        source = _function_source(ex, f"return {DELEGATE[exercise_id]}")
    ns = _run(source)
    for grade in (ex.grade(ns, source=source), ex.grade(ns) if ex.is_function else None):
        if grade is not None:  # with the source (read by ast) and without it (tripwires while it runs)
            assert grade.points == 0 and grade.feedback.startswith("Write it yourself"), grade
            assert ex.references[0] in grade.feedback
    _run(ex.check, ns)
    out = capsys.readouterr().out
    if ex.is_function:  # the formative check says so too, and does not pass
        assert "Write it yourself" in out and "✅" not in out and hints.attempted(ex.id)


def test_delegation_is_caught_through_an_imported_name_and_a_helper():
    ex = BY_ID["kd_loss"]
    imported = _run("from kdlab.losses import kd_loss\ndef my_kd_loss(s, t, T):\n    return kd_loss(s, t, T)")
    assert "kdlab.losses.kd_loss" in ex.grade(imported).feedback
    helper = _run("def helper(s, t, T):\n    return kdlab.losses.distillation_loss(s, t, t.argmax(1), T, 1.0)\n"
                  "def my_kd_loss(s, t, T):\n    return helper(s, t, T)")
    assert ex.grade(helper).feedback.startswith("Write it yourself")
    gap = BY_ID["gap_closed"]  # notebook 04 imports the kit's gap_closed itself
    ns = _run("from kdlab.experiments import gap_closed\n"
              "def my_gap_closed(student, scratch, teacher):\n    return gap_closed(student, scratch, teacher)")
    assert gap.grade(ns).feedback.startswith("Write it yourself")
    assert ns["gap_closed"] is kdlab.experiments.gap_closed, "the tripwires are taken down afterwards"


def test_tripwires_are_removed_even_when_the_answer_raises():
    original = kdlab.losses.kd_loss
    ns = _run("def my_kd_loss(s, t, T):\n    kdlab.losses.kd_loss(s, t, T)\n    raise ValueError('boom')")
    assert BY_ID["kd_loss"].grade(ns).points == 0
    assert kdlab.losses.kd_loss is original


def test_a_value_answer_is_read_from_ipythons_input_history(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    ns = _namespace()
    ns["pairs"] = kdlab.metrics.most_confused_pairs(ns["cm"], 5, ns["ds"].class_names)
    shell.user_ns.update(ns)
    shell.run_cell("answer = pairs[0][:2]", store_history=True)  # as a kernel runs a cell
    with pytest.raises(GradeError, match="Write it yourself: answer uses pairs"):
        autograde("most_confused", shell.user_ns)
    shell.run_cell("off = cm.clone()\noff.fill_diagonal_(-1)\ni, j = divmod(int(off.argmax()), 10)\n"
                   "answer = (ds.class_names[i], ds.class_names[j])", store_history=True)
    assert autograde("most_confused", shell.user_ns).points == 2


# --- hints and solutions for self-paced learners ----------------------------------------------

def test_hints_come_one_at_a_time_then_run_out(capsys):
    ex = BY_ID["kd_loss"]
    kdlab.checks.hint("kd_loss")
    assert ex.hints[0] in capsys.readouterr().out
    kdlab.checks.hint("kd_loss")
    assert ex.hints[1] in capsys.readouterr().out
    kdlab.checks.hint("kd_loss")
    assert "No more hints" in capsys.readouterr().out


def test_a_solution_is_shown_only_after_an_attempt(capsys):
    ex = BY_ID["kd_loss"]
    assert kdlab.checks.solution("kd_loss") is None
    assert "Have a go first" in capsys.readouterr().out
    kdlab.checks.check_kd_loss(None)
    kdlab.checks.check_kd_loss(_run(ex.stub)["my_kd_loss"])  # still the stub: not an attempt
    assert kdlab.checks.solution("kd_loss") is None
    out = capsys.readouterr().out
    assert 'kdlab.checks.hint("kd_loss")' in out and "Have a go first" in out
    kdlab.checks.check_kd_loss(lambda s, t, T: s.sum())  # wrong, but an attempt
    assert kdlab.checks.solution("kd_loss") == ex.solved_source()
    out = capsys.readouterr().out
    assert ex.solved_source() in out and "### BEGIN SOLUTION" not in out


def test_the_check_points_to_the_hints_only_when_it_fails(capsys):
    kdlab.checks.check_gap_closed(lambda st, sc, te: st)
    assert 'kdlab.checks.hint("gap_closed")' in capsys.readouterr().out
    kdlab.checks.check_gap_closed(lambda st, sc, te: (st - sc) / (te - sc))
    assert "hint" not in capsys.readouterr().out


def test_unknown_exercises_are_named_with_the_valid_ones():
    for call in (kdlab.checks.hint, kdlab.checks.solution, exercise):
        with pytest.raises(ParameterError, match=r"'kd' is not in the catalogue; exercises: accuracy, .*kd_loss"):
            call("kd")
    with pytest.raises(ParameterError, match="pareto_front"):
        autograde("kd", {})


# --- release -------------------------------------------------------------------------------------

def test_release_refuses_a_folder_that_is_not_empty(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ParameterError, match="not an empty folder"):
        release(out, ["01"], execute=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no partial release is left behind"


def test_release_writes_the_two_versions_and_a_readme(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()  # an empty folder is fine
    release(out, ["01", "03_temperature"], execute=False)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "instructor", "student"]
    for name in ("01_teacher_training.ipynb", "03_temperature.ipynb"):
        student = nbformat.read(out / "student" / name, as_version=4)
        assert student == nbformat.read(ROOT / "notebooks" / name, as_version=4)
        instructor = (out / "instructor" / name).read_text()
        assert "### BEGIN SOLUTION" in instructor and "### BEGIN HIDDEN TESTS" in instructor
        assert "### BEGIN SOLUTION" not in (out / "student" / name).read_text()
    readme = (out / "README.md").read_text()
    assert "kd_loss" in readme and "code_stub" in readme and "ece" not in readme


def test_verify_executed_names_a_failing_check_or_hidden_test():
    nb = instructor_notebook(nbformat.read(ROOT / "notebooks" / "01_teacher_training.ipynb", as_version=4))
    out = lambda text: [nbformat.v4.new_output("stream", name="stdout", text=text)]  # noqa: E731
    for cell in nb.cells:
        found = cells.role(cell)
        if found == ("accuracy", "test"):
            cell.outputs = out("✅ Correct.\n✅ autograder accuracy: 2/2 points. Correct: all 9 tests pass.\n")
        elif found == ("most_confused", "test"):
            cell.outputs = out("❌ Close: wrong way round.\n")
    problems = verify_executed(nb)
    assert len(problems) == 2 and all(p.startswith("most_confused") for p in problems)


def test_kdlab_classroom_release_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "class"
    assert cli.main(["classroom", "release", str(out), "02", "--no-execute"]) == 0
    assert (out / "student" / "02_soft_targets.ipynb").exists() and "wrote" in capsys.readouterr().out
    assert cli.main(["classroom", "release", str(out), "02", "--no-execute"]) == 2
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.slow
def test_release_runs_the_instructor_versions_in_smoke_mode(tmp_path, capsys):
    out = release(tmp_path / "out", ["01", "03"])
    assert "01_teacher_training: 2 exercise(s): checks pass, hidden tests give full points" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "instructor").iterdir()) == ["01_teacher_training.ipynb",
                                                                       "03_temperature.ipynb"]
    for path in (out / "instructor").iterdir():  # saved clean
        assert all(not c.get("outputs") for c in nbformat.read(path, as_version=4).cells)


@pytest.mark.slow
def test_a_broken_solution_stops_the_release(tmp_path, monkeypatch):
    import dataclasses

    import kdlab.classroom.catalogue as catalogue

    broken = dataclasses.replace(BY_ID["accuracy"], solution="return 0.5")
    monkeypatch.setitem(catalogue._BY_ID, "accuracy", broken)
    with pytest.raises(ReleaseError, match="01_teacher_training.ipynb: .*accuracy"):
        release(tmp_path / "out", ["01"])
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
