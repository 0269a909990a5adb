"""Registry: names, building, configs, collisions, with real entry points."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import losskit
from losskit.errors import AmbiguousLossError, ConfigError, PluginError, PluginWarning, UnknownLossError


def test_installed_example_plugin_is_listed_and_builds():
    assert "focal" in losskit.list_losses()
    spec = losskit.get_spec("focal")
    assert spec.qualified_name == "focal:focal"
    assert spec.plugin == "focal" and not spec.bundled
    assert spec.summary.startswith("Sigmoid focal loss")
    loss = losskit.build("focal", gamma=1.0)
    assert isinstance(loss, losskit.Loss) and isinstance(loss, torch.nn.Module)
    assert loss.config.gamma == 1.0


def test_build_accepts_name_dict_config_and_overrides():
    by_name = losskit.build("focal:focal", gamma=3.0)
    by_dict = losskit.build({"name": "focal", "gamma": 3.0})
    by_config = losskit.build(by_dict.config)
    overridden = losskit.build(by_dict.config, gamma=0.5, alpha=None)
    assert by_name.config == by_dict.config == by_config.config
    assert overridden.config.gamma == 0.5 and overridden.config.alpha is None
    assert by_dict.config.gamma == 3.0  # the source config is not mutated


def test_config_to_dict_round_trips():
    loss = losskit.build({"name": "focal", "gamma": 0.5})
    data = losskit.config_to_dict(loss.config)
    assert data["name"] == "focal:focal" and data["gamma"] == 0.5
    assert losskit.build(json.loads(json.dumps(data))).config == loss.config


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownLossError) as info:
        losskit.get_spec("focla")
    assert "'focal'" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownLossError, match="no_such_plugin:focal"):
        losskit.get_spec("no_such_plugin:focal")


def test_config_errors_list_one_line_per_field():
    with pytest.raises(ConfigError) as info:
        losskit.build({"name": "focal", "gamma": -1, "alpha": 2, "colour": "red"})
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("gamma: Input should be greater than or equal to 0") for line in lines)
    assert any(line.startswith("alpha: ") for line in lines)
    assert any(line.startswith("colour: Extra inputs are not permitted") for line in lines)
    assert isinstance(info.value, ValueError)


def test_bad_spec_values():
    with pytest.raises(ConfigError, match="^name: Field required"):
        losskit.build({"gamma": 1.0})
    with pytest.raises(ConfigError, match="name: Input should be a loss name"):
        losskit.build({"name": 3})
    with pytest.raises(TypeError, match="spec: expected a loss name"):
        losskit.build(3.5)
    with pytest.raises(ConfigError, match="reduction: Input should be 'mean', 'sum' or 'none'"):
        losskit.build("focal", reduction="avg")


def test_assigning_a_bad_value_raises_config_error():
    loss = losskit.build("focal")
    with pytest.raises(ConfigError, match="^gamma: "):
        loss.config.gamma = -2.0
    assert loss.config.gamma == 2.0


def test_load_config_yaml_and_json(tmp_path):
    y = tmp_path / "loss.yaml"
    y.write_text("name: focal\ngamma: 1.5\n")
    j = tmp_path / "loss.json"
    j.write_text(json.dumps({"name": "focal", "alpha": None}))
    assert losskit.build(losskit.load_config(y)).config.gamma == 1.5
    assert losskit.build(losskit.load_config(j)).config.alpha is None
    nested = tmp_path / "train.yaml"
    nested.write_text("steps: 10\nloss:\n  name: focal\n  gamma: 0.0\n")
    assert losskit.load_config(nested, key="loss").gamma == 0.0


@pytest.mark.parametrize(
    ("text", "suffix", "pattern"),
    [
        ("name: focal\ngamma: [1, 2\n", ".yaml", r"loss\.yaml:3:1: invalid YAML"),
        ('{"name": "focal",}', ".json", r"loss\.json:1:18: invalid JSON"),
        ("- focal\n", ".yaml", "expected a mapping at the top level, got list"),
        ("name: focal\ngamma: -3\n", ".yaml", r"loss\.yaml: invalid loss config\ngamma: Input should be greater than or equal to 0"),
        ("!!python/object/apply:os.system ['true']\n", ".yaml", "invalid YAML"),
    ],
)
def test_load_config_bad_files(tmp_path, text, suffix, pattern):
    path = tmp_path / f"loss{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        losskit.load_config(path)


def test_load_config_missing_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        losskit.load_config(tmp_path / "nope.yaml")
    path = tmp_path / "train.yaml"
    path.write_text("steps: 3\n")
    with pytest.raises(ConfigError, match="^loss: Field required"):
        losskit.load_config(path, key="loss")


def test_schema_of_one_loss_and_of_all():
    one = losskit.config_schema("focal")
    assert one["properties"]["name"]["enum"] == ["focal", "focal:focal"]
    assert "name" in one["required"]
    assert one["additionalProperties"] is False
    assert one["properties"]["gamma"]["minimum"] == 0.0
    union = losskit.config_schema()
    assert union["discriminator"]["propertyName"] == "name"
    refs = {branch["$ref"].split("/")[-1] for branch in union["oneOf"]}
    assert len(refs) == len(losskit.registry.default_registry().specs())
    assert "focal" in union["discriminator"]["mapping"]


# ---------------------------------------------------------------- real entry points

def test_third_party_plugin_from_installed_metadata(site, fresh):
    site.add_plugin("acme-losses", "acme", ["square"])
    reg = fresh()
    spec = reg.get_spec("square")
    assert spec.qualified_name == "acme:square" and spec.plugin == "acme"
    info = next(i for i in reg.plugin_infos() if i.name == "acme")
    assert (info.distribution, info.version, info.status) == ("acme-losses", "1.2.3", "loaded")
    assert info.losses == ["acme:square"]
    x = torch.tensor([1.0, -2.0])
    assert reg.build("square", scale=2.0)(x).item() == pytest.approx(5.0)


def test_short_name_of_two_third_party_plugins_is_ambiguous(site, fresh):
    site.add_plugin("alpha-losses", "alpha", ["square"])
    site.add_plugin("beta-losses", "beta", ["square"])
    reg = fresh()
    with pytest.raises(AmbiguousLossError) as info:
        reg.get_spec("square")
    assert info.value.candidates == ["alpha:square", "beta:square"]
    assert "alpha:square, beta:square" in str(info.value)
    assert reg.get_spec("beta:square").plugin == "beta"
    names = reg.list_losses()
    assert "alpha:square" in names and "beta:square" in names and "square" not in names


def test_same_name_twice_in_one_plugin_fails_that_plugin_only(site, fresh):
    site.add_plugin("dup-losses", "dup", ["square", "square"])
    site.add_plugin("good-losses", "good", ["cube"])
    reg = fresh()
    with pytest.warns(PluginWarning, match=r"dup \(dup-losses 1\.2\.3\).*registers 'square' twice"):
        infos = {i.name: i for i in reg.plugin_infos()}
    assert infos["dup"].status == "failed"
    assert infos["good"].status == "loaded"
    with pytest.raises(UnknownLossError):
        reg.get_spec("dup:square")  # nothing half-registered survives
    assert reg.get_spec("cube").plugin == "good"


BROKEN = {
    "import": "raise ImportError('no module named torch_sparse_magic')\n",
    "hook": "import losskit\n\n@losskit.hookimpl\ndef register_losses(register):\n    raise RuntimeError('boom in hook')\n",
    "not_a_loss": (
        "import losskit\n\nclass NotALoss:\n    pass\n\n@losskit.hookimpl\n"
        "def register_losses(register):\n    register('nal', NotALoss, config=losskit.LossConfig)\n"
    ),
    "bad_config": (
        "import losskit, pydantic\n\nclass L(losskit.Loss):\n    pass\n\n@losskit.hookimpl\n"
        "def register_losses(register):\n    register('badcfg', L, config=pydantic.BaseModel)\n"
    ),
    "bad_name": (
        "import losskit\n\nclass L(losskit.Loss):\n    pass\n\n@losskit.hookimpl\n"
        "def register_losses(register):\n    register('Bad Name', L, config=losskit.LossConfig)\n"
    ),
    "no_hook": "x = 1\n",
}
EXPECTED = {
    "import": "ImportError: no module named torch_sparse_magic",
    "hook": "RuntimeError: boom in hook",
    "not_a_loss": "must be a subclass of losskit.Loss",
    "bad_config": "must be a losskit.LossConfig subclass",
    "bad_name": "must match",
    "no_hook": "implements no losskit hook",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_reported_and_skipped(site, fresh, kind, monkeypatch):
    monkeypatch.delenv("LOSSKIT_STRICT_PLUGINS", raising=False)
    site.add_plugin("broken-dist", "broken", [], module=f"broken_{kind}", source=BROKEN[kind])
    site.add_plugin("fine-dist", "fine", ["square"])
    reg = fresh()
    with pytest.warns(PluginWarning) as record:
        infos = {i.name: i for i in reg.plugin_infos()}
    (message,) = [str(r.message) for r in record if r.category is PluginWarning]
    assert "\n" not in message  # one line
    assert "broken (broken-dist 1.2.3)" in message and EXPECTED[kind] in message
    assert infos["broken"].status == "failed" and EXPECTED[kind] in infos["broken"].error
    assert infos["fine"].status == "loaded"
    assert reg.get_spec("square").plugin == "fine"


def test_strict_mode_reraises_with_traceback(site, fresh, monkeypatch):
    site.add_plugin("broken-dist", "broken", [], module="broken_strict", source=BROKEN["hook"])
    monkeypatch.setenv("LOSSKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as info:
        fresh().list_losses()
    assert "boom in hook" in str(info.value) and "Traceback" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_strict_mode_raises_on_every_lookup(site, fresh, monkeypatch):
    site.add_plugin("broken-dist", "broken", [], module="broken_strict2", source=BROKEN["hook"])
    monkeypatch.setenv("LOSSKIT_STRICT_PLUGINS", "1")
    reg = fresh()
    for _ in range(2):
        with pytest.raises(PluginError, match="boom in hook"):
            reg.get_spec("focal")


def test_plugin_may_query_the_registry_while_loading(site, fresh):
    source = site.template(["square"]) + "\nimport losskit\nREGISTERED_BEFORE = losskit.list_losses()\n"
    site.add_plugin("curious-dist", "curious", ["square"], source=source)
    reg = fresh()
    assert reg.get_spec("square").plugin == "curious"


def test_disable_plugins_env(site, fresh, monkeypatch):
    site.add_plugin("acme-losses", "acme", ["square"])
    monkeypatch.setenv("LOSSKIT_DISABLE_PLUGINS", "acme, focal")
    reg = fresh()
    assert "square" not in reg.list_losses() and "focal" not in reg.list_losses()
    infos = {i.name: i for i in reg.plugin_infos()}
    assert infos["acme"].status == "disabled" and "LOSSKIT_DISABLE_PLUGINS" in infos["acme"].error
    monkeypatch.setenv("LOSSKIT_DISABLE_PLUGINS", "acme-losses")  # by distribution name
    assert "square" not in fresh().list_losses()


def test_disable_autoload_keeps_bundled_plugins_only(site, fresh, monkeypatch):
    site.add_plugin("acme-losses", "acme", ["square"])
    monkeypatch.setenv("LOSSKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = fresh()
    infos = reg.plugin_infos()
    assert {i.name for i in infos if i.status == "loaded"} == {i.name for i in infos if i.bundled}
    assert {"contrastive", "tokens", "boxes", "mixture"} <= {i.name for i in infos if i.status == "loaded"}
    assert all(s.bundled for s in reg.specs())
    assert "square" not in reg.list_losses() and "focal" not in reg.list_losses()


def test_bundled_plugins_load_through_the_entry_point_group():
    from importlib import metadata

    eps = {ep.name: ep for ep in metadata.entry_points(group="losskit")}
    for name in ("contrastive", "tokens", "boxes", "mixture"):
        assert eps[name].value == f"losskit_plugins.{name}"
        assert eps[name].dist.metadata["Name"] == "losskit"
    infos = {i.name: i for i in losskit.plugin_infos()}
    assert all(infos[n].bundled and infos[n].status == "loaded" for n in ("contrastive", "tokens", "boxes", "mixture"))


def test_bundled_name_reused_by_third_party_stays_bundled(site, fresh):
    bundled = losskit.get_spec("clip")
    assert bundled.bundled
    site.add_plugin("copycat-losses", "copycat", ["clip"])
    reg = fresh()
    with pytest.warns(PluginWarning, match="'clip' keeps meaning the bundled loss, use 'copycat:clip'"):
        spec = reg.get_spec("clip")
    assert spec.qualified_name == bundled.qualified_name
    assert reg.get_spec("copycat:clip").plugin == "copycat"
    assert "copycat:clip" in reg.list_losses() and "clip" in reg.list_losses()


class _TempPlugin:
    """A plugin object (not installed) registering one loss."""

    def __init__(self, name: str) -> None:
        self.name = name

    @losskit.hookimpl
    def register_losses(self, register):
        from losskit_focal import FocalConfig, FocalLoss

        register(self.name, FocalLoss, config=FocalConfig)


def test_temporary_plugin_registers_inside_block_only():
    with losskit.temporary_plugin(_TempPlugin("focal_tmp"), "tmpplug") as info:
        assert info.status == "loaded"
        assert losskit.get_spec("focal_tmp").qualified_name == "tmpplug:focal_tmp"
    with pytest.raises(UnknownLossError):
        losskit.get_spec("focal_tmp")


def test_temporary_plugin_cannot_replace_a_loaded_plugin():
    with pytest.raises(PluginError, match="already loaded"):
        with losskit.temporary_plugin(_TempPlugin("x"), "focal"):
            pass


def test_loading_is_lazy_and_does_not_import_plugins():
    import subprocess
    import sys

    code = (
        "import sys, losskit\n"
        "assert not any(m.startswith('losskit_plugins') for m in sys.modules), 'eager import'\n"
        "losskit.list_losses()\n"
        "assert 'losskit_plugins.contrastive' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_core_never_imports_plugins():
    from pathlib import Path

    root = Path(losskit.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "losskit_plugins" in p.read_text() and "import" in p.read_text()
        and any(line.lstrip().startswith(("import losskit_plugins", "from losskit_plugins")) for line in p.read_text().splitlines())
    ]
    assert offenders == []


def test_warnings_are_not_raised_for_a_clean_install():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losskit.registry.Registry().list_losses()
