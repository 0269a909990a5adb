"""The ``losskit`` command line, in process and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import losskit
from losskit.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_plain_json_and_pattern(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "focal" in out and "[focal:focal]" in out
    code, out, _ = run(capsys, "list", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == losskit.list_losses()
    assert {"name", "qualified_name", "plugin", "summary"} <= set(rows[0])
    code, out, _ = run(capsys, "list", "foc*", "--json")
    assert [r["name"] for r in json.loads(out)] == ["focal"]
    code, out, _ = run(capsys, "list", "zzz_nothing")
    assert code == 0 and out == ""


def test_show_describes_fields_and_gives_a_valid_example(capsys):
    code, out, _ = run(capsys, "show", "focal")
    assert code == 0
    assert "gamma: number = 2.0 [>= 0.0, <= 10.0]" in out
    assert "Focusing exponent" in out
    example = yaml.safe_load(out.split("example config (YAML):\n", 1)[1])
    assert losskit.build(example).config == losskit.build("focal").config


def test_show_unknown_name_is_a_clean_error(capsys):
    code, out, err = run(capsys, "show", "focall")
    assert code == 1 and out == ""
    assert err.startswith("losskit show: error: unknown loss 'focall'; did you mean 'focal'")


def test_schema_command(capsys):
    code, out, _ = run(capsys, "schema", "focal")
    assert json.loads(out)["properties"]["name"]["enum"] == ["focal", "focal:focal"]
    code, out, _ = run(capsys, "schema")
    assert json.loads(out)["discriminator"]["propertyName"] == "name"


def test_plugins_command(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    infos = {p["name"]: p for p in json.loads(out)}
    assert infos["focal"]["distribution"] == "losskit-focal" and infos["focal"]["status"] == "loaded"
    assert infos["contrastive"]["bundled"] is True
    code, out, _ = run(capsys, "plugins", "--check")
    assert code == 0 and "focal" in out


def test_check_command_by_loss_and_by_plugin(capsys):
    code, out, _ = run(capsys, "check", "focal", "--seeds", "1")
    assert code == 0 and "focal:focal: ok" in out and "ok   gradcheck" in out
    code, out, _ = run(capsys, "check", "focal:focal", "--seeds", "1")
    assert code == 0
    code, out, err = run(capsys, "check", "nope_nothing")
    assert code == 1 and "unknown loss" in err


def _env_with(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def test_console_script_and_module_entry(tmp_path):
    script = Path(sys.executable).parent / "losskit"
    out = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "focal" in out
    out = subprocess.run([sys.executable, "-m", "losskit", "--version"], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == f"losskit {losskit.__version__}"


def test_plugins_check_fails_on_a_broken_installed_plugin(site):
    site.add_plugin("broken-dist", "broken", [], module="broken_cli", source="raise ImportError('missing dep')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "losskit", "plugins", "--check"],
        capture_output=True, text=True, timeout=120, env=_env_with(site.root),
    )
    assert proc.returncode == 1
    assert "broken         broken-dist 1.2.3" in proc.stdout and "ImportError: missing dep" in proc.stdout
    assert "failed to load and was skipped" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "losskit", "plugins"], capture_output=True, text=True, timeout=120, env=_env_with(site.root)
    )
    assert ok.returncode == 0  # without --check a broken plugin is only reported


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_show_prints_the_call_signature(capsys):
    code, out, _ = run(capsys, "show", "focal")
    assert code == 0
    assert "  call:  loss(logits, targets)  (loss.compute(...) takes the same" in out
    code, out, _ = run(capsys, "show", "clip")
    assert "call:  loss(image_features, text_features, *, group_ids=None)" in out


RAISING_FACTORY = """
import losskit
from losskit.bench import BenchSpec
from losskit.loss import reduce


class C(losskit.LossConfig):
    pass


class L(losskit.Loss[C]):
    \"\"\"Sum.\"\"\"

    config_class = C

    def compute(self, x):
        return losskit.LossOutput(loss=reduce(x.float(), self.config.reduction))


def inputs(size, *, dtype, device, generator):
    raise RuntimeError("no GPU here")


@losskit.hookimpl
def register_losses(register):
    register("raiser", L, config=C, bench=BenchSpec(example_inputs=inputs))
"""


def test_check_on_a_raising_input_factory_prints_one_line(site):
    site.add_plugin("raiser-dist", "raiser", [], module="lkp_raiser", source=RAISING_FACTORY)
    proc = subprocess.run(
        [sys.executable, "-m", "losskit", "check", "raiser"], capture_output=True, text=True, timeout=120, env=_env_with(site.root)
    )
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "raiser:raiser: FAILED: its example_inputs factory raised RuntimeError: no GPU here (size {'B': 4, 'D': 3})"
    ]
    assert "Traceback" not in proc.stderr
