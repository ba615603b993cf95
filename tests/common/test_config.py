from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from unpaired_sr.common.config import (
    config_from_dict,
    config_to_dict,
    describe_fields,
    fields_help,
    load_config,
    save_config,
)
from unpaired_sr.common.errors import ConfigError


@dataclass
class DataSection:
    clean_dir: str = "photos"
    crop_size: int = 32
    names: list[str] = field(default_factory=list)


@dataclass
class TrainSection:
    n_iter: int = 100
    lr: float = 1e-4
    compile: bool = False
    schedule: Literal["cosine", "multistep"] = "cosine"
    milestones: list[int] = field(default_factory=lambda: [10, 20])
    seed: int | None = None


@dataclass
class ExampleConfig:
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)


@dataclass
class OptionSection:
    # Applied to samples where the data shows it:
    # auto decides from the data
    blur: bool | Literal["auto"] = "auto"


@dataclass
class OptionConfig:
    model: OptionSection = field(default_factory=OptionSection)


def write_yaml(tmp_path, tree) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_defaults_then_file_then_overrides(tmp_path):
    path = write_yaml(tmp_path, {"train": {"n_iter": 500, "lr": 2e-4}, "data": {"crop_size": 48}})
    config = load_config(ExampleConfig, path, ["--train.n_iter", "200", "--data.clean_dir=mine/"])
    assert config.train.n_iter == 200  # the override wins over the file
    assert config.train.lr == 2e-4  # from the file
    assert config.data.crop_size == 48
    assert config.data.clean_dir == "mine/"
    assert config.train.schedule == "cosine"  # default


def test_override_values_follow_the_field_type(tmp_path):
    config = load_config(
        ExampleConfig,
        None,
        [
            "--train.lr",
            "1e-4",
            "--train.compile",
            "true",
            "--data.clean_dir",
            "007",
            "--train.seed",
            "none",
            "--train.milestones",
            "3,5",
            "--data.names",
            "[a, b]",
        ],
    )
    assert config.train.lr == pytest.approx(1e-4) and isinstance(config.train.lr, float)
    assert config.train.compile is True
    assert config.data.clean_dir == "007"  # a string field keeps the text, no number parsing
    assert config.train.seed is None
    assert config.train.milestones == [3, 5]
    assert config.data.names == ["a", "b"]


def test_yaml_number_without_dot_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n")  # PyYAML reads this as the string "1e-4"
    assert load_config(ExampleConfig, path).train.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("tree", "overrides", "message"),
    [
        ({"train": {"niter": 5}}, [], "did you mean 'train.n_iter'"),
        ({"trian": {"n_iter": 5}}, [], "did you mean 'train'"),
        ({}, ["--train.learning_rat", "1"], "unknown config key 'train.learning_rat'"),
        ({}, ["--data.crop_sise", "1"], "did you mean 'data.crop_size'"),
        ({"train": {"n_iter": 2.5}}, [], "train.n_iter must be an integer, got 2.5"),
        ({"train": {"n_iter": "ten"}}, [], "train.n_iter must be an integer"),
        ({"train": {"compile": "yes please"}}, [], "train.compile must be a boolean"),
        ({"train": {"schedule": "linear"}}, [], "train.schedule must be one of 'cosine', 'multistep'"),
        ({"train": {"milestones": [1, "x"]}}, [], "train.milestones[1] must be an integer"),
        ({"data": {"clean_dir": 5}}, [], "data.clean_dir must be a string"),
        ({"data": 3}, [], "data must be a mapping"),
        ({}, ["--train.n_iter", "2e3"], "train.n_iter must be an integer, got '2e3'"),
        ({}, ["--train.n_iter"], "has no value"),
        ({}, ["--train"], "unrecognized argument"),
        ({}, ["--train.lr.x", "1"], "is a value, not a section"),
        ({}, ["--data", "x"], "unrecognized argument"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, tree, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(ExampleConfig, write_yaml(tmp_path, tree), overrides)
    assert message in str(error.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(ExampleConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ExampleConfig, bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(ExampleConfig, bad)


def test_saved_config_round_trips(tmp_path):
    config = load_config(ExampleConfig, None, ["--train.milestones", "[1, 2, 3]", "--train.seed", "7"])
    save_config(config, tmp_path / "resolved.yaml")
    again = load_config(ExampleConfig, tmp_path / "resolved.yaml")
    assert again == config
    assert config_from_dict(ExampleConfig, config_to_dict(config)) == config


def test_describe_fields_lists_every_leaf():
    lines = describe_fields(ExampleConfig)
    assert "--train.n_iter (an integer, default 100)" in lines
    assert len(lines) == 9


def test_a_switch_with_auto_takes_booleans_and_auto_and_its_help_joins_the_comment_lines(tmp_path):
    assert load_config(OptionConfig).model.blur == "auto"
    assert load_config(OptionConfig, overrides=["--model.blur", "true"]).model.blur is True
    assert load_config(OptionConfig, write_yaml(tmp_path, {"model": {"blur": False}})).model.blur is False
    with pytest.raises(ConfigError, match="model.blur must be a boolean"):
        load_config(OptionConfig, overrides=["--model.blur", "sometimes"])
    (line,) = describe_fields(OptionConfig)
    assert line.endswith("default 'auto')  Applied to samples where the data shows it: auto decides from the data")


def test_help_describes_each_field_with_the_value_in_force(tmp_path):
    from unpaired_sr.sr.config import SRConfig

    path = write_yaml(tmp_path, {"data": {"degradation": "camera"}, "train": {"n_iter": 7}})
    text = fields_help(SRConfig, ["--config", path, "--help"])
    assert text.startswith(f"config fields (values from {path}):")
    assert "--train.n_iter (an integer, >= 1, value 7)  training steps in all" in text
    degradation = next(line for line in text.splitlines() if "--data.degradation" in line)
    assert "{pairs, flow, bicubic, noise_jpeg" in degradation and "value 'camera')  where the LQ" in degradation
    assert "default 20000" in fields_help(SRConfig, ["--help"])  # no --config: the defaults


@given(
    n_iter=st.integers(min_value=-(2**40), max_value=2**40),
    lr=st.floats(allow_nan=False, allow_infinity=False),
    name=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
)
def test_overrides_round_trip_any_value(n_iter, lr, name):
    config = load_config(
        ExampleConfig, None, ["--train.n_iter", str(n_iter), "--train.lr", repr(lr), f"--data.clean_dir={name}"]
    )
    assert config.train.n_iter == n_iter
    assert config.train.lr == lr
    assert config.data.clean_dir == name


def _numeric_fields(schema, prefix=""):
    """Every int/float field reachable from a stage config, as (dotted key, section class, name)."""
    import dataclasses
    from typing import get_type_hints

    hints = get_type_hints(schema)
    for entry in dataclasses.fields(schema):
        kind = hints[entry.name]
        if dataclasses.is_dataclass(kind):
            yield from _numeric_fields(kind, f"{prefix}{entry.name}.")
        elif kind in (int, float):
            yield f"{prefix}{entry.name}", schema, entry.name


def _bad_value(spec: str) -> str:
    """A value just outside ``spec``."""
    spec = spec.strip()
    if spec.startswith("{"):
        return str(max(int(float(item)) for item in spec[1:-1].split(",")) + 1)
    if spec[0] in "[(":
        high = float(spec[1:-1].split(",")[1])
        return str(high if spec[-1] == ")" else high + 1)
    operator, bound = spec.split()
    return str(int(float(bound)) - 1) if operator == ">=" else bound


def test_every_numeric_field_has_a_range_and_a_bad_value_is_one_clear_error():
    from unpaired_sr.common.config import field_ranges
    from unpaired_sr.degradation.config import FlowConfig
    from unpaired_sr.joint.config import PipelineConfig
    from unpaired_sr.sr.config import SRConfig

    checked = 0
    for stage in (FlowConfig, SRConfig, PipelineConfig):
        for dotted, section, name in _numeric_fields(stage):
            spec = field_ranges(section).get(name)
            assert spec is not None, f"{stage.__name__}: {dotted} declares no range"
            bad = _bad_value(spec)
            with pytest.raises(ConfigError) as caught:
                load_config(stage, None, [f"--{dotted}", bad])
            message = str(caught.value)
            assert dotted in message and "out of range" in message and spec in message and "\n" not in message
            checked += 1
    assert checked > 60


def test_range_specs():
    from unpaired_sr.common.config import in_range

    assert in_range(1, ">= 1") and not in_range(0, ">= 1")
    assert in_range(1e-9, "> 0") and not in_range(0.0, "> 0")
    assert in_range(0.0, "[0, 1)") and not in_range(1.0, "[0, 1)") and in_range(1.0, "(0, 1]")
    assert in_range(3, "{2, 3, 4}") and not in_range(5, "{2, 3, 4}")


def test_a_config_file_of_random_bytes_is_one_clear_error(tmp_path):
    path = tmp_path / "noise.yaml"
    path.write_bytes(bytes(range(128, 256)) * 4)
    from unpaired_sr.degradation.config import FlowConfig

    with pytest.raises(ConfigError, match="is not a text file"):
        load_config(FlowConfig, path)


def test_an_out_of_range_value_on_the_command_line_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    command = [sys.executable, "-m", "degradation.train", "--config", "configs/deflow_light.yaml"]
    command += ["--output", str(tmp_path / "run"), "--train.grad_clip", "-50"]
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: train.grad_clip = -50.0 is out of range (allowed: > 0)"]


@pytest.mark.parametrize(
    "command",
    [
        ["sr.infer", "--ckpt", "x.pt", "--input", "in", "--output", "out", "--tile-size", "0"],
        ["sr.infer", "--ckpt", "x.pt", "--input", "in", "--output", "out", "--batch-size", "0"],
        ["degradation.synthesize", "--ckpt", "x.pt", "--input", "in", "--output", "out", "--n-samples", "0"],
        ["degradation.synthesize", "--ckpt", "x.pt", "--input", "in", "--output", "out", "--temperature", "-1"],
    ],
)
def test_command_line_sizes_are_range_checked(command):
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )
    assert result.returncode == 2 and "must be >=" in result.stderr and "Traceback" not in result.stderr
