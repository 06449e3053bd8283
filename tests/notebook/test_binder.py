"""binder/: what can be checked offline. (A clean install is too slow for CI; the pins
are checked against pyproject.toml instead.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def requirement_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def declared_requirements() -> dict[str, Requirement]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    found = [Requirement(text) for text in project["dependencies"]]
    for extra in ("notebook", "local"):
        found += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return {canonicalize_name(req.name): req for req in found}


def test_only_binder_dir_is_used_for_configuration() -> None:
    # repo2docker refuses a repository with both binder/ and .binder/.
    assert BINDER.is_dir()
    assert not (ROOT / ".binder").exists()


def test_runtime_is_a_python_the_project_supports() -> None:
    text = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(3\.\d+)", text)
    assert match, text
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert Version(match.group(1)) in SpecifierSet(project["requires-python"])
    assert match.group(1) in ("3.11", "3.12")


def test_the_repository_is_installed_with_the_notebook_and_local_extras() -> None:
    local = [line for line in requirement_lines() if line.startswith(".")]
    assert len(local) == 1
    extras = re.fullmatch(r"\.\[([a-z,]+)\]", local[0])
    assert extras, local[0]
    assert set(extras.group(1).split(",")) >= {"notebook", "local"}


def test_every_other_line_is_an_exact_pin() -> None:
    for line in requirement_lines():
        if line.startswith("."):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, line
        assert specifiers[0].operator == "==", line


def test_pins_satisfy_pyproject() -> None:
    declared = declared_requirements()
    pinned = {
        canonicalize_name(Requirement(line).name): Requirement(line)
        for line in requirement_lines()
        if not line.startswith(".")
    }
    # Every direct dependency of the installed extras is pinned, so a build is repeatable.
    assert set(declared) <= set(pinned), sorted(set(declared) - set(pinned))
    for name, requirement in declared.items():
        (pin,) = pinned[name].specifier
        assert Version(pin.version) in requirement.specifier, (name, str(requirement), pin)
    assert "jupyterlab" in pinned  # the interface Binder opens
    assert "ipykernel" in pinned


def test_the_notebooks_binder_opens_exist() -> None:
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
