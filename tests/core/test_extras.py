"""The library apart from its tools: no plotting/progress/image stack to build a loss, and a
clear `pip install` line from a tool whose extra is missing (real subprocesses, real import blocking)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("tqdm", "matplotlib", "PIL")

#: a meta-path finder that makes the tools' packages uninstalled for the rest of the process
BLOCK = f"""
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TOOLS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=180)


def test_core_dependencies_leave_the_tools_to_an_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {dep.split(">")[0].split("<")[0].split("=")[0].strip().lower() for dep in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "pluggy", "pydantic", "pyyaml"} <= core
    assert not core & {"matplotlib", "pillow", "tqdm"}
    tools = {dep.split(">")[0].lower() for dep in project["optional-dependencies"]["tools"]}
    assert tools == {"matplotlib", "pillow", "tqdm"}


def test_every_loss_builds_and_runs_without_the_tools():
    code = (
        "import torch, losskit\n"
        "names = losskit.list_losses()\n"
        "assert {'clip', 'token_ce', 'bbox', 'mixture'} <= set(names), names\n"
        "for n in names:\n"
        "    losskit.build(n)\n"
        "out = losskit.build('clip')(torch.randn(4, 8), torch.randn(4, 8))\n"
        "assert torch.isfinite(out)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL', 'tqdm', 'losskit')"
        " and (m.startswith(('matplotlib', 'PIL', 'tqdm')) or m.startswith(('losskit.train', 'losskit.bench.runner')))))\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert "failed to load" not in proc.stderr  # no bundled plugin needed them


def test_the_tools_are_not_imported_by_building_a_loss_when_installed():
    code = (
        "import sys, losskit\n"
        "for n in losskit.list_losses():\n"
        "    losskit.build(n)\n"
        # torch.hub imports tqdm on its own when it is installed; matplotlib and PIL must stay out
        "print(sorted(m for m in ('matplotlib', 'PIL', 'losskit.train', 'losskit.bench.runner') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_train_without_the_tools_says_which_pip_install_fixes_it():
    proc = _run("from losskit.cli import main\nraise SystemExit(main(['train']))\n")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "losskit train: error: losskit train needs tqdm, matplotlib, Pillow, from the losskit[tools] extra: "
        'pip install "losskit[tools]" (in a clone: pip install -e ".[tools]")'
    )


def test_bench_without_the_tools_says_which_pip_install_fixes_it(tmp_path):
    args = "['bench', 'focal', '--size', 'tiny', '--repeat', '1', '--warmup', '0', '--no-memory'"
    plot = _run(f"from losskit.cli import main\nraise SystemExit(main({args}, '--no-progress', '--plot', '{tmp_path}/b.png']))\n")
    assert plot.returncode == 1
    assert 'losskit bench --plot needs matplotlib, from the losskit[tools] extra: pip install "losskit[tools]"' in plot.stderr
    progress = _run(f"from losskit.cli import main\nraise SystemExit(main({args}]))\n")
    assert progress.returncode == 1
    assert "losskit bench's progress bar needs tqdm, from the losskit[tools] extra" in progress.stderr
    # torchvision (the focal baseline) needs Pillow itself: time the loss alone
    plain = _run(f"from losskit.cli import main\nraise SystemExit(main({args}, '--no-progress', '--no-baselines']))\n")
    assert plain.returncode == 0, plain.stderr
    assert "focal" in plain.stdout
