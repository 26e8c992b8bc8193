"""The install files agree with each other and admit the torch pair that installs here."""

import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _key(req: str) -> tuple:
    r = Requirement(req)
    return (r.name.lower(), str(r.specifier), str(r.marker) if r.marker else "")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = _pyproject()["project"]
    declared = {_key(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_key(r) for r in pip_section if not r.startswith("-")}
    assert listed == declared, f"only in environment.yml: {listed - declared}; only in pyproject: {declared - listed}"
    assert any(r.startswith("-e .") for r in pip_section), "environment.yml must install the kit itself"
    assert "conda-forge" in env["channels"]


def _spec(name: str):
    for req in _pyproject()["project"]["dependencies"]:
        r = Requirement(req)
        if r.name == name:
            return r.specifier
    raise AssertionError(f"{name} is not a dependency")


def test_torch_ranges_admit_the_local_pair_and_exclude_2_13_0():
    assert Version("2.14.1") in _spec("torch")
    assert Version("0.29.1") in _spec("torchvision")
    # torchvision fails to import beside torch 2.13.0.
    assert Version("2.13.0") not in _spec("torch")


def test_console_script_points_at_the_cli():
    assert _pyproject()["project"]["scripts"]["kdlab"] == "kdlab.cli:main"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, flags=re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert "make test" in commands, "the README must show `make test` in a code block"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci_lines
    assert "set -euo pipefail" in ci_lines
