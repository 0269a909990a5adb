"""Hostile and careless plugins (real installed distributions): each is reported and skipped, the rest loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from losskit.errors import PluginError, PluginWarning, SchemaError

SYSEXIT_AT_IMPORT = "import sys\nsys.exit(3)\n"
SYSEXIT_IN_HOOK = (
    "import losskit\n\n@losskit.hookimpl\ndef register_losses(register):\n    raise SystemExit('bye from the hook')\n"
)
BASE_EXCEPTION_IN_HOOK = (
    "import losskit\n\nclass Weird(BaseException):\n    pass\n\n@losskit.hookimpl\n"
    "def register_losses(register):\n    raise Weird('not an Exception')\n"
)


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (SYSEXIT_AT_IMPORT, "SystemExit: 3"),
        (SYSEXIT_IN_HOOK, "SystemExit: bye from the hook"),
        (BASE_EXCEPTION_IN_HOOK, "Weird: not an Exception"),
    ],
)
def test_base_exceptions_of_a_plugin_are_reported_and_skipped(site, fresh, monkeypatch, source, expected):
    monkeypatch.delenv("LOSSKIT_STRICT_PLUGINS", raising=False)
    site.add_plugin("lkp-sysexit", "sysexit", [], module=f"lkp_sysexit_{abs(hash(source))}", source=source)
    site.add_plugin("fine-dist", "fine", ["square"])
    reg = fresh()
    with pytest.warns(PluginWarning, match=rf"sysexit \(lkp-sysexit 1\.2\.3\) failed to load and was skipped: {expected}"):
        infos = {i.name: i for i in reg.plugin_infos()}
    assert infos["sysexit"].status == "failed" and infos["sysexit"].error == expected
    assert reg.build("square")  # the others still load, and build works
    assert "clip" in reg.list_losses()


def test_strict_mode_turns_a_plugin_sysexit_into_a_plugin_error(site, fresh, monkeypatch):
    site.add_plugin("lkp-sysexit", "sysexit", [], module="lkp_sysexit_strict", source=SYSEXIT_AT_IMPORT)
    monkeypatch.setenv("LOSSKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="SystemExit: 3") as info:
        fresh().list_losses()
    assert isinstance(info.value.__cause__, SystemExit)


def test_keyboard_interrupt_still_interrupts(site, fresh):
    source = "import losskit\n\n@losskit.hookimpl\ndef register_losses(register):\n    raise KeyboardInterrupt\n"
    site.add_plugin("ctrl-c", "ctrlc", [], module="lkp_ctrlc", source=source)
    with pytest.raises(KeyboardInterrupt):
        fresh().list_losses()


@pytest.mark.parametrize("spelling", ["lkp-sysexit", "lkp_sysexit", "LKP_SysExit", "lkp.sysexit", " sysexit "])
def test_disable_plugins_matches_normalised_names(site, fresh, monkeypatch, spelling):
    site.add_plugin("lkp-sysexit", "sysexit", [], module="lkp_sysexit_disabled", source=SYSEXIT_AT_IMPORT)
    monkeypatch.setenv("LOSSKIT_DISABLE_PLUGINS", spelling)
    infos = {i.name: i for i in fresh().plugin_infos()}  # no warning: it is never imported
    assert infos["sysexit"].status == "disabled"
    assert "lkp_sysexit_disabled" not in sys.modules


def test_a_plugin_printing_at_import_does_not_corrupt_json_output(site):
    source = "print('hello from a chatty plugin')\n" + site.template(["chatty"])
    site.add_plugin("chatty-dist", "chatty", ["chatty"], module="lkp_chatty", source=source)
    for argv in (["list", "--json"], ["plugins", "--json"], ["schema", "chatty"]):
        proc = subprocess.run(
            [sys.executable, "-m", "losskit", *argv], capture_output=True, text=True, timeout=120, env=_env(site.root)
        )
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)  # stdout is JSON only
        assert "hello from a chatty plugin" in proc.stderr


def test_a_disabled_bundled_plugin_reports_who_takes_its_names(site, fresh, monkeypatch):
    site.add_plugin("copycat-losses", "copycat", ["clip"])
    monkeypatch.setenv("LOSSKIT_DISABLE_PLUGINS", "contrastive")
    reg = fresh()
    with pytest.warns(PluginWarning) as record:
        spec = reg.get_spec("clip")
    assert spec.qualified_name == "copycat:clip"
    messages = [str(r.message) for r in record if r.category is PluginWarning]
    assert messages == [
        "plugin 'copycat' registers 'clip', a name of the bundled plugin 'contrastive', which "
        "LOSSKIT_DISABLE_PLUGINS disables: 'clip' now means 'copycat:clip'"
    ]


def test_first_use_from_many_threads_loads_once_and_everyone_waits(site, fresh):
    # a slow plugin widens the window in which the other threads arrive during the load
    source = "import time\n" + site.template(["slow"]).replace("def register_losses(register):", "def register_losses(register):\n    time.sleep(0.3)")
    site.add_plugin("slow-dist", "slow", ["slow"], module="lkp_slow", source=source)
    reg = fresh()
    barrier = threading.Barrier(4)
    results: list[object] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results.append(reg.get_spec("token_ce").name if i % 2 else reg.list_losses())
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    assert all(r == "token_ce" or (isinstance(r, list) and {"slow", "token_ce", "clip"} <= set(r)) for r in results), results
    assert [i.name for i in reg.plugin_infos()].count("slow") == 1


UNSCHEMABLE = '''
from typing import Callable
from pydantic import Field
import losskit
from losskit.loss import reduce


class HookConfig(losskit.LossConfig):
    transform: Callable[[float], float] = Field(abs, description="applied to every value")


class HookLoss(losskit.Loss[HookConfig]):
    """A loss whose config holds a callable."""

    config_class = HookConfig

    def compute(self, x):
        return losskit.LossOutput(loss=reduce(x.float(), self.config.reduction))


@losskit.hookimpl
def register_losses(register):
    register("hooked", HookLoss, config=HookConfig)
'''


def test_a_config_without_json_schema_leaves_the_others_in_the_schema(site, fresh, capsys):
    site.add_plugin("hooked-dist", "hooked", [], module="lkp_hooked", source=UNSCHEMABLE)
    reg = fresh()
    with pytest.warns(PluginWarning, match=r"the config of 'hooked:hooked' has no JSON Schema .*left out"):
        schema = reg.config_schema()
    assert "clip" in schema["discriminator"]["mapping"] and "hooked" not in schema["discriminator"]["mapping"]
    assert list(schema["x-losskit-unavailable"]) == ["hooked:hooked"]
    with pytest.raises(SchemaError, match=r"the config of 'hooked:hooked' has no JSON Schema \(PydanticInvalidForJsonSchema"):
        reg.config_schema("hooked")
    proc = subprocess.run(
        [sys.executable, "-m", "losskit", "schema"], capture_output=True, text=True, timeout=120, env=_env(site.root)
    )
    assert proc.returncode == 0 and "clip" in json.loads(proc.stdout)["discriminator"]["mapping"]
    assert "has no JSON Schema" in proc.stderr
    one = subprocess.run(
        [sys.executable, "-m", "losskit", "schema", "hooked"], capture_output=True, text=True, timeout=120, env=_env(site.root)
    )
    assert one.returncode == 1 and one.stdout == ""
    assert one.stderr.startswith("losskit schema: error: the config of 'hooked:hooked' has no JSON Schema")
