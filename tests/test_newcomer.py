"""The newcomer path: the README's set-up line works as root and as a user and fails loudly; the README and --help
describe every command; no project file points outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mixbench.cli import build_parser

REPO = Path(__file__).parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def stub(folder: Path, name: str, body: str = "") -> None:
    """A command on PATH that logs its arguments (and does `body`)."""
    path = folder / name
    path.write_text(f"#!/bin/bash\necho \"{name} $*\" >> \"$STUB_LOG\"\n{body}\n")
    path.chmod(0o755)


def run_setup(tmp_path: Path, *, uid: int, sudo: bool, apt_fails: bool = False) -> tuple[int, str, list[str]]:
    """scripts/setup.sh with apt-get, sudo, id and python replaced by stubs; PATH holds nothing else, so a real
    sudo or apt-get can never be reached."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    stub(bin_dir, "id", f"echo {uid}")
    stub(bin_dir, "apt-get", "exit 100" if apt_fails else "")
    stub(bin_dir, "python", "")
    if sudo:
        stub(bin_dir, "sudo", '"$@"')
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": str(bin_dir), "STUB_LOG": str(log), "PYTHON": "python", "HOME": str(tmp_path)}
    done = subprocess.run([shutil.which("bash"), str(SETUP)], env=env, capture_output=True, text=True, timeout=60)
    calls = [line for line in log.read_text().splitlines() if not line.startswith("id ")]
    return done.returncode, done.stderr, calls


APT = ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends dataset-fashion-mnist slurm-wlm munge"]
PIP = "python -m pip install -e .[all]"


def test_setup_as_root_runs_apt_directly_then_pip(tmp_path):
    code, err, calls = run_setup(tmp_path, uid=0, sudo=False)
    assert code == 0, err
    assert calls == [*APT, PIP]


def test_setup_as_a_user_runs_apt_through_sudo(tmp_path):
    code, err, calls = run_setup(tmp_path, uid=1000, sudo=True)
    assert code == 0, err
    assert calls == [f"sudo {APT[0]}", APT[0], f"sudo {APT[1]}", APT[1], PIP]


def test_setup_as_a_user_without_sudo_fails_loudly_before_anything(tmp_path):
    code, err, calls = run_setup(tmp_path, uid=1000, sudo=False)
    assert code == 1 and calls == []
    assert "scripts/setup.sh: apt-get needs root: run this as root, or install sudo" in err


def test_setup_stops_at_a_failing_apt_step_and_never_reaches_pip(tmp_path):
    code, _, calls = run_setup(tmp_path, uid=0, sudo=False, apt_fails=True)
    assert code == 100 and calls == [APT[0]]


def test_the_readme_set_up_line_is_the_script_and_ci_runs_it_too():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert "scripts/setup.sh && python -m pytest -q\n" in blocks
    assert not any("sudo " in block for block in blocks[:2])
    assert "download.pytorch.org/whl/cpu" in readme  # the CPU-only torch, before anything else is installed
    assert re.search(r"^scripts/setup\.sh$", (REPO / ".ci" / "run").read_text(), flags=re.M)


def test_the_readme_cli_table_lists_every_command():
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| command | what it does |"):].split("\n\n")[0]
    listed = set(re.findall(r"^\| `mixbench (\w+)", table, flags=re.M))
    commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    assert commands <= listed, f"missing from the README's CLI table: {sorted(commands - listed)}"
    assert "MIXBENCH_THREADS" in readme and "--threads" in table


def test_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "module" not in text and "parses arguments" not in text
    assert "mixbench run suites/smoke.yaml" in text


def test_no_project_file_names_a_path_outside_the_repository():
    outside = re.compile(r"/work/|/root/|/home/|\.\./shared")
    found = []
    for folder in ("mixbench", "docs", "methods", "suites", "benchmarks", "scripts", ".ci"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix not in (".pyc", ".png", ".pdf", ".csv"):
                for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if outside.search(line):
                        found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    for name in ("README.md", "pyproject.toml"):
        found += [f"{name}: {line}" for line in (REPO / name).read_text().splitlines() if outside.search(line)]
    assert not found, "\n".join(found)
