"""Tests of the config schema, the YAML loader, `--set` overrides and their error messages.

Every bad config must fail with one `ConfigError` paragraph that cites ``file:line`` and the key;
expected line numbers are found in the YAML text itself rather than typed in.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.tag import Tag

from mlp_cli import shipped
from mlp_cli.config import (
    AdamConfig,
    Config,
    ModelConfig,
    ScheduleConfig,
    SGDConfig,
    config_from_dict,
    config_from_yaml,
    config_schema,
    dump_config,
    load_config,
    parse_override,
    unused_settings,
)
from mlp_cli.errors import ConfigError
from mlp_cli.limits import MAX_CONFIG_BYTES

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").glob("*.yaml"))

MINIMAL = "model:\n  layers: 784-100-10\n"


def line_of(text: str, fragment: str) -> int:
    """1-based number of the first line of `text` containing `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert message.strip()
    assert "\n\n" not in message  # one paragraph
    assert "Traceback" not in message
    return message


# --- bad configs: each names the file, the line and the key ----------------------------------

BAD_CONFIGS = [
    pytest.param(
        "model:\n  layers: 784-100-10\n  hiden_activation: tanh\n",
        "hiden_activation",
        ["unknown key 'model.hiden_activation'", "did you mean 'hidden_activation'?"],
        id="typo-key",
    ),
    pytest.param(
        "model:\n  layers: 784-100-10\n  activation: tanh\n",
        "activation",
        ["did you mean 'hidden_activation' or 'output_activation'?"],
        id="typo-key-as-close-to-two-keys",
    ),
    pytest.param(
        MINIMAL + "trainig:\n  epochs: 3\n",
        "trainig",
        ["unknown key 'trainig'", "did you mean 'training'?"],
        id="typo-section",
    ),
    pytest.param(
        MINIMAL + "training.epochs: 3\n",
        "training.epochs",
        ["unknown key 'training.epochs'", "did you mean 'training: {epochs: ...}'?"],
        id="dotted-key",
    ),
    pytest.param(
        MINIMAL + "training:\n  early_stopping.patience: 3\n",
        "early_stopping",
        ["did you mean 'early_stopping: {patience: ...}'?"],
        id="dotted-key-in-a-section",
    ),
    pytest.param(
        MINIMAL + "training:\n  epochs: abc\n",
        "epochs",
        ["training.epochs", "expected an integer, found 'abc'"],
        id="wrong-type",
    ),
    pytest.param(
        MINIMAL + "training:\n  epochs: '5'\n",
        "epochs",
        ["training.epochs", "found '5'", "without quotes"],
        id="quoted-number",
    ),
    pytest.param(
        MINIMAL + "training:\n  epochs: '{1: 2}'\n",
        "epochs",
        ["training.epochs", "expected an integer, found '{1: 2}'"],
        id="quoted-mapping-with-a-number-key",
    ),
    pytest.param(
        MINIMAL + "training:\n  epochs: '{a: 1, a: 2}'\n",
        "epochs",
        ["training.epochs", "expected an integer, found '{a: 1, a: 2}'"],
        id="quoted-mapping-with-a-duplicate-key",
    ),
    pytest.param(
        MINIMAL + "training:\n  batch_size: 32.5\n",
        "batch_size",
        ["training.batch_size", "expected an integer, found 32.5"],
        id="float-for-int",
    ),
    pytest.param(
        MINIMAL + "data:\n  validation_size: 50000\ntraining:\n  batch_size: 20000\n",
        "batch_size",
        [
            "training.batch_size: is 20,000 but only 10,000 training images remain after the"
            " 50,000 of data.validation_size; a batch holds at most all of them"
        ],
        id="batch-larger-than-the-training-images",
    ),
    pytest.param(
        MINIMAL + "data:\n  validation_size: 59999\ntraining:\n  batch_size: 2\n",
        "batch_size",
        ["training.batch_size: is 2 but only 1 training image remains after the 59,999"],
        id="batch-larger-than-the-one-training-image",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: sgd\n  lr: -0.1\n",
        "lr:",
        ["optimizer.lr: expected a number greater than 0, found -0.1"],
        id="negative-lr",
    ),
    pytest.param(
        "data:\n  input_size: 28\nmodel:\n  layers: 400-25-10\n",
        "layers",
        ["model.layers", "400", "784", "data.input_size: 20"],
        id="layers-vs-input-size",
    ),
    pytest.param(
        "model:\n  layers: [784, 100, 12]\n",
        "layers",
        ["model.layers", "ends with 12", "10 classes"],
        id="wrong-output-size",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: adam\n  momentum: 0.9\n",
        "momentum",
        ["unknown key 'optimizer.momentum'", "adam", "sgd", "rmsprop"],
        id="key-of-another-optimizer",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: sgdd\n",
        "sgdd",
        ["optimizer.name", "'sgdd'", "did you mean 'sgd'?"],
        id="unknown-optimizer",
    ),
    pytest.param(
        "model:\n  layers: 784-100-10\n  hidden_activation: sigmod\n",
        "sigmod",
        ["model.hidden_activation", "found 'sigmod'", "did you mean 'sigmoid'?"],
        id="unknown-choice",
    ),
    pytest.param(
        "model:\n  layers: 784-100-10\n  dropout: [0.2, 0.5, 0.5]\n",
        "dropout",
        ["model.dropout", "3 rates", "2 weight layers"],
        id="dropout-length",
    ),
    pytest.param(
        "model:\n  layers: 784-10\n  dropout: [0.2, 0.5]\n",
        "dropout",
        ["model.dropout: has 2 rates but layers 784-10 has 1 weight layer; give one rate"],
        id="dropout-length-of-one-weight-layer",
    ),
    pytest.param(
        "model:\n  layers: 784-100-10\n  dropout: [0.2, 1.5]\n",
        "dropout",
        ["model.dropout[1]", "less than 1", "1.5"],
        id="dropout-range",
    ),
    pytest.param(
        "model:\n  layers: 784" + "-1" * 70 + "-10\n",
        "layers",
        ["model.layers: expected at most 65 items, found 72."],
        id="too-many-layers",
    ),
    pytest.param(
        "model:\n  layers: 784-abc-10\n",
        "layers",
        ["model.layers", "'784-abc-10'", "784-100-10"],
        id="layers-text",
    ),
    pytest.param(
        "model:\n  layers: 784-" + "9" * 5000 + "-10\n",
        "layers",
        ["model.layers", "expected layer sizes", "784-100-10", "'784-9999"],
        id="layers-text-too-long-for-int",
    ),
    pytest.param(
        MINIMAL + "data:\n  validation_size: 0\ntraining:\n  early_stopping:\n    patience: 3\n",
        "patience",
        ["training.early_stopping.patience", "data.validation_size"],
        id="patience-without-validation",
    ),
    pytest.param(
        MINIMAL + "training:\n  early_stopping:\n    monitor: val_acc\n    min_delta: 1\n",
        "min_delta",
        ["training.early_stopping.min_delta: is 1.0 but monitor is val_acc", "fraction", "0.005"],
        id="accuracy-min-delta-beyond-any-rise",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  lr: 0.01\nschedule:\n  name: cosine\n  min_lr: 0.1\n",
        "min_lr",
        ["schedule.min_lr", "is 0.1 but optimizer.lr is 0.01", "at most optimizer.lr"],
        id="min-lr-above-lr",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  lr: 0.01\nschedule:\n  name: onecycle\n  min_lr: 0.1\n",
        "min_lr",
        ["schedule.min_lr", "is 0.1 but optimizer.lr is 0.01", "onecycle lowers"],
        id="onecycle-min-lr-above-lr",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: sgd\n  nesterov: true\n",
        "nesterov",
        ["optimizer.nesterov", "momentum"],
        id="nesterov-without-momentum",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: adam\n  eps: 1.0e-44\n",
        "eps",
        ["optimizer.eps", "is 1e-44", "sqrt(1 - beta2)", "0 in float32", "0 / 0"],
        id="adam-eps-lost-in-float32",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: rmsprop\n  eps: 1.0e-300\n",
        "eps",
        ["optimizer.eps", "is 1e-300", "0 in float32", "0 / 0"],
        id="rmsprop-eps-lost-in-float32",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: rmsprop\n  eps: 7.006492321624085e-46\n",
        "eps",
        ["optimizer.eps", "is 7.006492321624085e-46", "0 in float32"],
        id="rmsprop-eps-of-2^-150-rounding-to-0",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: adamw\n  lr: 0.01\n  weight_decay: 300\n",
        "weight_decay",
        ["optimizer.weight_decay", "is 300", "1 - lr * weight_decay = -2", "below 1"],
        id="weight-decay-beyond-the-weights",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: adamw\n  lr: 0.5\n  weight_decay: 2\n",
        "weight_decay",
        ["optimizer.weight_decay", "is 2", "1 - lr * weight_decay = 0", "below 1"],
        id="weight-decay-erasing-the-weights",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  name: sgd\n  lr: 0.1\nregularization:\n  l2: 30\n",
        "l2",
        [
            "regularization.l2",
            "is 30",
            "lr * l2 = 3",
            "enlarge the weights until they overflow",
            "below 2",
            "optimizer.lr",
        ],
        id="l2-beyond-sgd-stability",
    ),
    pytest.param(
        MINIMAL + "optimizer:\n  {name: sgd, lr: 1, momentum: 0.5, nesterov: true}\n"
        "regularization:\n  l2: 1.5\n",
        "l2",
        ["regularization.l2", "lr * l2 = 1.5", "which keep their size", "below 1.5"],
        id="l2-at-nesterov-stability-bound",
    ),
    pytest.param(
        "model:\n  layers: 784-100-10\n  init_scale: 0.1\n",
        "init_scale",
        ["model.init_scale", "xavier"],
        id="init-scale-unused",
    ),
    pytest.param(
        MINIMAL + "data:\n  mirror: ftp://example.org/mnist/\n",
        "mirror",
        ["data.mirror", "http://", "'ftp://example.org/mnist/'"],
        id="mirror-scheme",
    ),
    pytest.param(
        "name: ../escape\n" + MINIMAL,
        "name",
        ["name:", "'../escape'", "folder name"],
        id="unsafe-name",
    ),
    pytest.param(
        MINIMAL + 'output:\n  dir: "runs\\0x"\n',
        "dir",
        ["output.dir", "NUL", "'runs\\x00x'"],
        id="nul-in-path",
    ),
    pytest.param(
        MINIMAL + "schedule:\n  gamma: .inf\n",
        "gamma",
        ["schedule.gamma", "finite"],
        id="infinite-number",
    ),
    pytest.param(
        MINIMAL + "training:\n",
        "training",
        ["training", "expected a section", "nothing (null)"],
        id="empty-section",
    ),
    pytest.param(
        "data:\n  input_size: 20\n",
        "data",
        ["model", "required", "'model: {layers: 784-100-10}'"],
        id="missing-model",
    ),
    pytest.param(
        "model:\n  hidden_activation: relu\n",
        "model",
        ["model.layers", "required", "'layers: 784-100-10' under model"],
        id="missing-layers",
    ),
]


@pytest.mark.parametrize(("text", "fragment", "expected"), BAD_CONFIGS)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, text: str, fragment: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    message = config_error(path)
    assert f"{path}:{line_of(text, fragment)}:" in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("setting", "quoted", "blamed"),
    [
        ("training:\n  epochs", "'5'", True),
        ("optimizer:\n  lr", "'1e-3'", True),
        ("augment:\n  enabled", "'true'", True),
        ("data:\n  input_size", "'20'", True),
        ("training:\n  epochs", "'1e3'", False),  # without quotes a number, but no integer
        ("training:\n  epochs", "'true'", False),
        ("optimizer:\n  lr", "'false'", False),
        ("augment:\n  enabled", "'1'", False),
        ("data:\n  input_size", "'30'", False),
    ],
)
def test_quotes_are_blamed_only_where_the_value_without_them_is_taken(
    tmp_path: Path, setting: str, quoted: str, blamed: bool
) -> None:
    text = MINIMAL + f"{setting}: {quoted}\n"
    message = config_error(write(tmp_path, text))
    assert f"found {quoted}" in message
    assert ("without quotes" in message) == blamed


def test_several_problems_are_reported_together_in_file_order(tmp_path: Path) -> None:
    text = (
        "model:\n  layers: 784-100-10\n  hiden_activation: relu\n"
        "optimizer:\n  lr: -1\ntraining:\n  epochs: 0\n"
    )
    message = config_error(write(tmp_path, text))
    lines = message.splitlines()
    assert len(lines) == 3
    for clause, fragment in zip(lines, ["hiden_activation", "lr:", "epochs"], strict=True):
        assert clause.startswith(f"{tmp_path / 'run.yaml'}:{line_of(text, fragment)}:")


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    text = MINIMAL + "optimizer:\n  lr: 0.1\n  beta1: 0.8\n  lr: 0.2\n"
    path = write(tmp_path, text)
    message = config_error(path)
    second = len(text.splitlines())
    assert f"{path}:{second}:" in message
    assert f"line {line_of(text, 'lr: 0.1')}" in message
    assert "optimizer.lr" in message
    assert message.endswith("Keep only one of the two lines.")


def test_yaml_syntax_error_cites_line_and_column(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  epochs: [1, 2\n  batch_size: 3\n"
    path = write(tmp_path, text)
    message = config_error(path)
    problem = yaml.YAMLError  # the parser's own report, for comparison
    with pytest.raises(problem) as info:
        yaml.safe_load(text)
    mark = info.value.problem_mark  # type: ignore[attr-defined]
    assert f"{path}:{mark.line + 1}:{mark.column + 1}:" in message
    assert info.value.problem in message  # type: ignore[attr-defined]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_control_character_is_cited_by_line_and_column(tmp_path: Path, newline: str) -> None:
    text = MINIMAL + "name: a\x1bb\n"
    path = tmp_path / "run.yaml"
    path.write_bytes(text.replace("\n", newline).encode())
    message = config_error(path)
    column = text.splitlines()[-1].index("\x1b") + 1
    assert message.startswith(f"{path}:{line_of(text, 'name')}:{column}: invalid YAML: ")
    assert "#x001b" in message


@pytest.mark.parametrize("key", ["training.epochs", "data.mirror"])
def test_an_override_below_a_single_setting_says_so(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_yaml(MINIMAL, "c.yaml", [f"{key}.x=3"])
    assert str(info.value) == (
        f"--set {key}.x=3: {key} is a single setting, not a section, so it has no key 'x'."
    )


def test_an_explicit_str_tag_gives_text(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, MINIMAL + "name: !!str 12\n"), ["data.mirror=!!str http://h/"]
    )
    assert cfg.name == "12"
    assert cfg.data.mirror == "http://h/"


@pytest.mark.parametrize(
    "text",
    [
        "training: &t\n  <<: *t\n",
        "data: &d {mirror: *d}\n",
        "data: &d [<<: *d]\n",
        "model: &m {layers: [*m]}\n",
    ],
)
def test_an_alias_to_the_value_that_contains_it_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, MINIMAL + text if not text.startswith("model") else text)
    message = config_error(path)
    assert f"{path}:" in message
    assert "refers to the value that contains it" in message


def test_a_failure_inside_the_yaml_library_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'add_referent'")

    monkeypatch.setattr(SafeConstructor, "construct_document", fail)
    path = write(tmp_path, MINIMAL)
    assert config_error(path) == (
        f"{path}: invalid YAML: AttributeError: 'NoneType' object has no attribute 'add_referent'."
    )


@pytest.mark.parametrize("version", ["1.0", "1.3", "2.0"])
def test_a_yaml_directive_of_a_version_the_library_refuses_is_a_config_error(
    tmp_path: Path, version: str
) -> None:
    path = write(tmp_path, f"%YAML {version}\n---\n" + MINIMAL)
    refused = (
        f"the %YAML directive names version {version}, but a config is read as YAML 1.2;"
        " write '%YAML 1.2' or remove the line."
    )
    assert config_error(path) == f"{path}:1:1: {refused}"
    with pytest.raises(ConfigError) as info:
        config_from_yaml(MINIMAL, "c.yaml", [f"name=%YAML {version}\n--- x"])
    assert str(info.value).endswith(f"--- x': the value at character 1: {refused}")


def test_a_merge_tag_on_a_value_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "name: !!merge x\n")
    assert "the tag '!!merge' is not allowed" in config_error(path)


def test_python_tag_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "command-ran"
    text = MINIMAL + f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    path = write(tmp_path, text)
    message = config_error(path)
    assert f"{path}:{line_of(text, 'python/object')}:" in message
    assert "!!python/object/apply:os.system" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/name:os.system", "!!python/name:os.system"),
        ("!!timestamp 2020-13-45", "!!timestamp"),
        ("!!binary aGk=", "!!binary"),
        ("!!set {a}", "!!set"),
        ("!custom 3", "!custom"),
    ],
)
def test_tags_outside_the_core_schema_are_refused(tmp_path: Path, value: str, tag: str) -> None:
    text = MINIMAL + f"name: {value}\n"
    path = write(tmp_path, text)
    message = config_error(path)
    assert f"{path}:{line_of(text, value)}:" in message
    assert f"tag '{tag}' is not allowed" in message


@pytest.mark.parametrize("value", ["!" + "t" * 100_000 + " x", "*" + "a" * 100_000])
def test_a_tag_or_alias_of_any_length_is_cut_short(tmp_path: Path, value: str) -> None:
    text = MINIMAL + f"name: {value}\n"
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}:{line_of(text, 'name')}:")
    assert value[1:50] in message  # the name, after the ! or *
    assert len(message) < 1000


@pytest.mark.parametrize("handle", ["!", "!!", "!e!"])
def test_a_long_tag_is_refused_as_it_is_read_not_decoded(
    tmp_path: Path, handle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ruamel decodes a tag in time that grows with the square of its length
    def decoded(tag: Tag) -> None:
        raise AssertionError("the tag was decoded")

    monkeypatch.setattr(Tag, "uri_decoded_suffix", property(decoded))
    tag = handle + "t" * (MAX_CONFIG_BYTES - 1000)
    text = "%TAG !e! tag:example.com,2000:\n---\n" + MINIMAL + f"name: {tag} x\n"
    message = config_error(write(tmp_path, text))
    assert f"the tag '{tag[:97]}...' is not allowed" in message


def test_huge_integer_is_reported_not_printed(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  epochs: [0x" + "f" * 5000 + "]\n"
    message = config_error(write(tmp_path, text))
    assert "training.epochs: expected an integer" in message
    assert "digits" in message


@pytest.mark.parametrize("value", ["9" * 5000, "+" + "9_999" * 1250])  # YAML reads '_' in one
def test_an_integer_too_long_to_read_is_called_one(tmp_path: Path, value: str) -> None:
    text = MINIMAL + "training:\n  seed: " + value + "\n"
    path = write(tmp_path, text)
    message = config_error(path)
    assert f"{path}:{line_of(text, 'seed')}:" in message
    assert "an integer of 5,000 digits, too long to read" in message
    assert "expected an integer" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    message = config_error(path)
    assert f"config file '{path}' not found" in message


def test_folder_instead_of_file(tmp_path: Path) -> None:
    assert "folder" in config_error(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = config_error(path)
    assert f"'{path}' is empty" in message


@pytest.mark.parametrize(("text", "found"), [("- 1\n- 2\n", "a list"), ("42\n", "42")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    message = config_error(write(tmp_path, text))
    assert "mapping" in message
    assert f"found {found}" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in config_error(path)


# --- YAML 1.2 scalars ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [("1e-3", 1e-3), ("1E-3", 1e-3), (".5", 0.5), ("1e3", 1e3), ("+2.5e+2", 250.0)],
)
def test_floats_in_exponent_notation_are_numbers(literal: str, value: float) -> None:
    cfg = config_from_yaml(MINIMAL + f"optimizer:\n  lr: {literal}\n")
    assert isinstance(cfg.optimizer.lr, float)
    assert cfg.optimizer.lr == value == float(literal)


def test_core_schema_scalars() -> None:
    # YAML 1.1 would read these as a boolean, octal 10 and a date.
    text = "name: no\nmodel:\n  layers: 784-100-10\ntraining:\n  epochs: 012\n"
    cfg = config_from_yaml(text + "output:\n  dir: 1000-10-10\n")
    assert cfg.name == "no"
    assert cfg.training.epochs == 12
    assert cfg.output.dir == "1000-10-10"


def test_a_tilde_in_output_dir_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config_from_yaml(MINIMAL + "output:\n  dir: ~/runs\n")
    assert cfg.output.dir == str(tmp_path / "runs")
    cfg = config_from_yaml(MINIMAL, overrides=["output.dir=~/x"])
    assert cfg.output.dir == str(tmp_path / "x")
    # what `mlp config show` prints and a run saves: the folder the runs go to
    assert yaml.safe_load(dump_config(cfg))["output"]["dir"] == str(tmp_path / "x")


def test_integer_field_accepts_hex_and_octal() -> None:
    cfg = config_from_yaml(MINIMAL + "training:\n  batch_size: 0x40\n  seed: 0o17\n")
    assert (cfg.training.batch_size, cfg.training.seed) == (0x40, 0o17)


# --- the schema -------------------------------------------------------------------------------


def test_defaults() -> None:
    cfg = config_from_yaml(MINIMAL)
    assert cfg.model.layers == [784, 100, 10]
    assert isinstance(cfg.optimizer, AdamConfig)
    assert cfg.optimizer.lr == AdamConfig().lr
    assert cfg.data.input_size**2 == cfg.model.layers[0]
    assert cfg.training.early_stopping.patience is None


def test_layers_as_list_or_text_are_the_same() -> None:
    as_text = config_from_yaml("model:\n  layers: 784 - 30 - 20-10\n")
    as_list = config_from_yaml("model:\n  layers: [784, 30, 20, 10]\n")
    assert as_text == as_list
    assert as_text.model.layers == [784, 30, 20, 10]


def test_optimizer_section_without_name_tunes_adam() -> None:
    cfg = config_from_yaml(MINIMAL + "optimizer:\n  lr: 0.01\n")
    assert isinstance(cfg.optimizer, AdamConfig)
    assert cfg.optimizer.lr == 0.01


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_each_optimizer_is_chosen_by_name(name: str) -> None:
    cfg = config_from_yaml(MINIMAL + f"optimizer:\n  name: {name}\n")
    assert cfg.optimizer.name == name
    assert type(cfg.optimizer).__name__.lower().startswith(name)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_an_l2_penalty_sgd_keeps_stable_is_accepted(momentum: float, nesterov: bool) -> None:
    # lr * l2 just below 2 (1 + momentum), or 2 (1 + momentum) / (1 + 2 momentum) for Nesterov
    bound = 2 * (1 + momentum) / (1 + 2 * momentum if nesterov else 1)
    optimizer = f"{{name: sgd, lr: 0.1, momentum: {momentum}, nesterov: {str(nesterov).lower()}}}"
    text = MINIMAL + f"optimizer: {optimizer}\nregularization:\n  l2: {bound * 9.99}\n"
    assert config_from_yaml(text).regularization.l2 == bound * 9.99


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_a_min_lr_equal_to_lr_is_accepted(name: str) -> None:
    text = MINIMAL + f"optimizer:\n  lr: 0.01\nschedule:\n  name: {name}\n  min_lr: 0.01\n"
    assert config_from_yaml(text).schedule.min_lr == 0.01


@pytest.mark.parametrize(("name", "eps"), [("adam", 1e-43), ("adamw", 1e-43), ("rmsprop", 1e-45)])
def test_an_eps_that_float32_keeps_above_0_is_accepted(name: str, eps: float) -> None:
    # about the smallest such eps (Adam's for the default beta2): each trains on MNIST without a NaN
    cfg = config_from_yaml(MINIMAL + f"optimizer:\n  name: {name}\n  eps: {eps}\n")
    assert not isinstance(cfg.optimizer, SGDConfig)
    assert cfg.optimizer.eps == eps


@pytest.mark.parametrize(
    ("layers", "dropout", "rates"),
    [
        ([784, 10], 0.3, [0.0]),
        ([784, 100, 10], 0.5, [0.0, 0.5]),
        ([784, 100, 50, 10], 0.25, [0.0, 0.25, 0.25]),
        ([784, 100, 10], [0.2, 0.5], [0.2, 0.5]),
    ],
)
def test_dropout_rates(layers: list[int], dropout: float | list[float], rates: list[float]) -> None:
    model = ModelConfig(layers=layers, dropout=dropout)
    assert model.dropout_rates == rates
    assert len(model.dropout_rates) == len(layers) - 1


@pytest.mark.parametrize(("monitor", "min_delta"), [("val_acc", 0.999), ("val_loss", 5.0)])
def test_a_min_delta_the_monitored_metric_can_exceed_is_accepted(
    monitor: str, min_delta: float
) -> None:
    stopping = f"{{monitor: {monitor}, min_delta: {min_delta}}}"
    cfg = config_from_yaml(MINIMAL + f"training:\n  early_stopping: {stopping}\n")
    assert cfg.training.early_stopping.min_delta == min_delta


def test_an_accuracy_min_delta_of_1_or_more_stays_readable_in_a_trained_config() -> None:
    # a run trained before such a value was refused is read back as it was trained
    stopping = {"monitor": "val_acc", "min_delta": 1.5}
    data = {"model": {"layers": [784, 10]}, "training": {"early_stopping": stopping}}
    assert config_from_dict(data, trained=True).training.early_stopping.min_delta == 1.5
    with pytest.raises(ConfigError, match="min_delta"):
        config_from_dict(data)


def test_settings_that_change_nothing_are_named_and_defaults_are_not() -> None:
    base = {"model": {"layers": [784, 10]}, "data": {"validation_size": 0}}
    assert unused_settings(config_from_dict(base)) == []
    changed = {
        **base,
        "model": {"layers": [784, 10], "hidden_activation": "tanh", "dropout": 0.2},
        "schedule": {"name": "cosine", "step_size": 5, "gamma": 0.3},
        "training": {"early_stopping": {"monitor": "val_acc", "min_delta": 0.01}},
    }
    unused = unused_settings(config_from_dict(changed))
    named = [sentence.split(" is ")[0] for sentence in unused]
    assert named == [
        "schedule.step_size",
        "schedule.gamma",
        "model.hidden_activation",
        "model.dropout",
        "training.early_stopping.monitor",
        "training.early_stopping.min_delta",
    ]
    assert unused[0] == (
        "schedule.step_size is 5, but the cosine schedule does not use it (only step does),"
        " so it changes nothing in this run"
    )
    assert "[0.2] would drop the inputs" in unused[3]
    # The same settings where the config's other choices read them change something.
    used = {
        "model": {"layers": [784, 30, 10], "hidden_activation": "tanh", "dropout": 0.2},
        "schedule": {"name": "step", "step_size": 5, "gamma": 0.3},
        "training": {"early_stopping": {"monitor": "val_acc", "min_delta": 0.01}},
    }
    assert unused_settings(config_from_dict(used)) == []
    floor = {"model": {"layers": [784, 10]}, "schedule": {"name": "step", "min_lr": 0.001}}
    assert unused_settings(config_from_dict(floor)) == [
        "schedule.min_lr is 0.001, but the step schedule does not use it (only cosine and"
        " onecycle does), so it changes nothing in this run"
    ]


def test_every_setting_has_a_one_line_description() -> None:
    schema = config_schema()
    models = [schema, *schema["$defs"].values()]
    settings_seen = 0
    for model in models:
        for key, prop in model.get("properties", {}).items():
            settings_seen += 1
            description = prop.get("description", "")
            assert description, f"{model['title']}.{key} has no description"
            assert "\n" not in description
    assert settings_seen >= sum(len(m.model_fields) for m in (Config, ModelConfig, SGDConfig))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_the_json_schema_accepts_every_shipped_config(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    # Read as YAML 1.2, as mlp reads it (2e-4 is a number); the layers are written as text,
    # 784-100-10, as the schema's description allows.
    jsonschema.validate(YAML(typ="safe", pure=True).load(path.read_text()), config_schema())


@pytest.mark.parametrize("name", ["a/b", "", ".hidden", "x" * 101, "a[red]b"])
def test_the_json_schema_refuses_a_run_name_mlp_refuses(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    config = {"name": name, "model": {"layers": [784, 10]}}
    with pytest.raises(ConfigError):
        config_from_dict(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, config_schema())
    for good in ("my-run_2.b", "x" * 100, None):
        jsonschema.validate({**config, "name": good}, config_schema())


@pytest.mark.parametrize("text", ["784-0-10", "0-10", "-".join(["784"] + ["5"] * 64 + ["10"])])
def test_the_json_schema_refuses_layers_text_mlp_refuses(text: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    config = {"model": {"layers": text}}
    with pytest.raises(ConfigError):
        config_from_dict(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, config_schema())
    for good in ("0784 - 100 - 10", "-".join(["784"] + ["5"] * 63 + ["10"])):
        config_from_dict({"model": {"layers": good}})
        jsonschema.validate({"model": {"layers": good}}, config_schema())


def test_the_json_schema_reads_an_optimizer_section_without_a_name_as_adam() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = config_schema()
    config = {"model": {"layers": [784, 10]}, "optimizer": {"lr": 0.01}}
    assert isinstance(config_from_dict(config).optimizer, AdamConfig)
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):  # momentum is SGD's and RMSprop's, not Adam's
        jsonschema.validate({**config, "optimizer": {"momentum": 0.9}}, schema)
    with pytest.raises(ConfigError):
        config_from_dict({**config, "optimizer": {"momentum": 0.9}})


def test_the_default_config_is_shipped_and_the_repository_keeps_one_copy() -> None:
    assert shipped.DEFAULT_CONFIG in [c.name for c in shipped.shipped_configs()]
    # configs/ is the package's own folder, so the wheel ships exactly what git holds.
    assert (REPO / "configs").resolve() == shipped.CONFIGS_DIR
    assert [p.stem for p in SHIPPED] == [c.name for c in shipped.shipped_configs()]


def test_importing_config_does_not_import_numpy(imports_of: Callable[[str], set[str]]) -> None:
    assert "numpy" not in imports_of("import mlp_cli.config")


# --- shipped configs ------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.model.layers[0] == cfg.data.input_size**2
    if any(ch.isdigit() for ch in path.stem):  # names like mnist-784-100-10 tell the layers
        assert path.stem.endswith("-".join(map(str, cfg.model.layers)))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_comments_every_setting(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert " # " in line, f"{path.name}:{number} has no comment"


def test_shipped_configs_cover_the_three_architectures() -> None:
    layers = {tuple(load_config(p).model.layers) for p in SHIPPED}
    assert {(400, 25, 10), (784, 100, 10), (784, 10)} <= layers


def test_a_shipped_config_loads_by_name_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    by_name = load_config("mnist-784-100-10", ["training.epochs=3"])
    by_path = load_config(REPO / "configs" / "mnist-784-100-10.yaml", ["training.epochs=3"])
    assert by_name == by_path
    assert load_config("mnist-784-100-10.yaml") == load_config("mnist-784-100-10")


def test_a_file_in_the_current_folder_wins_over_the_shipped_config_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist-400-25-10").write_text("model: {layers: 784-10}\n")
    assert load_config("mnist-400-25-10").model.layers == [784, 10]


def test_a_missing_config_names_the_shipped_ones_and_the_closest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("mnist-400-25")
    message = str(caught.value)
    assert "did you mean 'mnist-400-25-10'?" in message
    assert all(c.name in message for c in shipped.shipped_configs())
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/mnist-400-25-10.yaml")  # a path is a path, not a name


def test_every_shipped_config_header_gives_a_sentence_and_a_target() -> None:
    configs = {c.name: c for c in shipped.shipped_configs()}
    assert configs["mnist-400-25-10"].expected == 97.0
    assert configs["mnist-784-800-10"].expected == 98.4
    assert configs["logistic-784-10"].description == (
        "Softmax (multinomial logistic) regression on MNIST: the 784 pixels feed the 10"
        " outputs directly, with no hidden layer."
    )
    for config in configs.values():
        assert config.expected is not None
        assert config.description.endswith(".")
        assert len(config.description) < 200, config.name


def test_header_lines_stop_at_the_first_setting() -> None:
    text = "\n# one\n#two\n# expected: >= 9% test accuracy\nname: x  # not header\n# late\n"
    assert shipped.header_lines(text) == ["one", "two", "expected: >= 9% test accuracy"]


def test_header_lines_keep_a_comments_own_indentation() -> None:
    # `mlp config show` prints them: only the "#" and the one space after it go
    text = "#   - an item\n#  two spaces \n"
    assert shipped.header_lines(text) == ["  - an item", " two spaces "]


def test_a_shipped_configs_description_and_target_come_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text(
        "# Trains fast! Then more.\n# expected: >= 90% test accuracy\n"
        "# expected: >= 97.5% test accuracy\nname: a\n"
    )
    (tmp_path / "b.yaml").write_text("# Is this a question? Yes.\nname: b\n")
    monkeypatch.setattr(shipped, "CONFIGS_DIR", tmp_path)
    a, b = shipped.shipped_configs()
    assert (a.name, a.description, a.expected) == ("a", "Trains fast!", 97.5)  # the last target
    assert (b.name, b.description, b.expected) == ("b", "Is this a question?", None)


# --- overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("training.epochs=5", ["training", "epochs"], 5),
        ("optimizer.lr=1e-3", ["optimizer", "lr"], 0.001),
        ("model.layers=784-100-10", ["model", "layers"], "784-100-10"),
        ("model.layers=[784, 10]", ["model", "layers"], [784, 10]),
        ("augment.enabled=true", ["augment", "enabled"], True),
        ("training.threads=", ["training", "threads"], None),
        (" name = a=b ", ["name"], "a=b"),
    ],
)
def test_parse_override(text: str, path: list[str], value: Any) -> None:
    assert parse_override(text) == (path, value)


def test_overrides_are_applied_in_order_and_validated(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "optimizer:\n  name: sgd\n  lr: 0.5\n")
    cfg = load_config(
        path,
        [
            "training.epochs=5",
            "optimizer.lr=1e-3",
            "model.layers=400-25-10",
            "data.input_size=20",
            "optimizer.momentum=0.9",
            "training.epochs=7",
        ],
    )
    assert cfg.training.epochs == 7
    assert isinstance(cfg.optimizer, SGDConfig)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == (0.001, 0.9)
    assert cfg.model.layers == [400, 25, 10]


def test_override_can_switch_optimizer(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ["optimizer.name=rmsprop", "optimizer.rho=0.8"])
    assert cfg.optimizer.name == "rmsprop"
    assert cfg.optimizer.model_dump()["rho"] == 0.8


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.epochs=abc", ["training.epochs", "expected an integer, found 'abc'"]),
        ("optimizer.lr=-1", ["optimizer.lr", "greater than 0"]),
        ("trainig.epochs=5", ["unknown key 'trainig'", "did you mean 'training'?"]),
        ("model.hiden_activation=tanh", ["unknown key 'model.hiden_activation'"]),
        ("optimizer.beta1=0.5", ["unknown key 'optimizer.beta1'", "sgd"]),
        ("model.layers.first=3", ["model.layers", "not a section"]),
        ("training.epochs", ["KEY=VALUE"]),
        ("=5", ["KEY=VALUE"]),
        ("training..epochs=5", ["KEY=VALUE"]),
        ("training.epochs=[1", ["invalid YAML"]),
        ("name=[red]x", ["invalid YAML: expected '<document start>', but found '<scalar>'."]),
        ("model.layers=400-25-10", ["model.layers", "data.input_size"]),
    ],
)
def test_bad_override_cites_the_override(
    tmp_path: Path, override: str, expected: list[str]
) -> None:
    path = write(tmp_path, MINIMAL + "optimizer:\n  name: sgd\n")
    message = config_error(path, (override,))
    assert f"--set {override}" in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training={1: 2}", "training={1: 2}: training has the key 1, but keys must be names"),
        ("a.b={x: {1: 2}}", "a.b={x: {1: 2}}: a.b.x has the key 1"),
        (
            "training={epochs: 1, epochs: 2}",
            "training={epochs: 1, epochs: 2}: duplicate key 'training.epochs'; it is already"
            " set. Keep only one of the two.",
        ),
    ],
)
def test_a_mapping_given_to_set_names_its_keys_below_the_override_without_lines(
    tmp_path: Path, override: str, expected: str
) -> None:
    message = config_error(write(tmp_path, MINIMAL), (override,))
    assert f"--set {expected}" in message
    assert "top level" not in message
    assert "line" not in message


@pytest.mark.parametrize("prefix", ["", "model."])
def test_an_unknown_key_of_any_length_is_cut_short(tmp_path: Path, prefix: str) -> None:
    key = prefix + "k" * 5000
    message = config_error(write(tmp_path, MINIMAL), (f"{key}=1",))
    assert f"unknown key '{key[:97]}...'" in message
    assert len(message) < 1000
    # in a file, as an explicit key (a plain one ends at YAML's 1,024 characters)
    message = config_error(write(tmp_path, MINIMAL + f"? {key}\n: 1\n"))
    assert f"unknown key '{key[:97]}...'" in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    ("override", "threads"),
    [("training.threads=auto", "auto"), ("training.threads=3", 3), ("training.threads=", None)],
)
def test_threads_are_auto_by_default_a_number_or_null(
    tmp_path: Path, override: str, threads: Any
) -> None:
    assert config_from_yaml(MINIMAL).training.threads == "auto"
    assert config_from_yaml(MINIMAL + "training: {threads: 3}\n").training.threads == 3
    assert load_config(write(tmp_path, MINIMAL), [override]).training.threads == threads


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "two", "Auto", "true", "'4'", "[2]"])
def test_threads_refuse_anything_else_with_one_message(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, MINIMAL + f"training:\n  threads: {value}\n")
    message = config_error(path)
    assert (
        f"{path}:4: training.threads: expected a number of threads (1 or more), auto or null"
        in (message)
    )
    assert message.count("training.threads") == 1


def test_an_override_changes_only_the_section_it_names(tmp_path: Path) -> None:
    text = MINIMAL + "schedule: &shared {}\naugment: *shared\n"
    cfg = load_config(write(tmp_path, text), ["augment.enabled=true"])
    assert cfg.augment.enabled
    assert cfg.schedule == ScheduleConfig()


def test_override_replacing_a_file_value_cites_the_override(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  epochs: 3\n  batch_size: 0\n"
    path = write(tmp_path, text)
    message = config_error(path, ("training.epochs=-2",))
    assert "--set training.epochs=-2: training.epochs:" in message
    assert f"{path}:{line_of(text, 'batch_size')}: training.batch_size:" in message


# --- names, dumping and plain data ---------------------------------------------------------


def test_a_swept_text_reaches_each_trial_as_written(tmp_path: Path) -> None:
    from mlp_cli.sweep import plan

    write(tmp_path, MINIMAL, "base.yaml")
    # a character beyond U+FFFF, which JSON escapes as two halves, and text that looks like one
    folder = "runs/\U0001f600 \\ud83d\\ude00 \u00e9"
    sweep = f"name: s\nconfig: base.yaml\nparameters:\n  output.dir: {{values: ['{folder}']}}\n"
    trial = plan(write(tmp_path, sweep, "s.yaml")).trials[0]
    assert trial.config["output"]["dir"] == folder


def test_a_sweep_takes_a_base_config_whose_file_name_is_no_run_name(tmp_path: Path) -> None:
    from mlp_cli.sweep import plan

    write(tmp_path, MINIMAL, "base (copy).yaml")  # its trials are named after the sweep
    sweep = "name: s\nconfig: base (copy).yaml\nparameters:\n  training.epochs: {values: [1]}\n"
    assert plan(write(tmp_path, sweep, "s.yaml")).trials[0].config["name"] == "s-t000"


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL, "my-run.yaml")).name == "my-run"
    assert load_config(write(tmp_path, "name: other\n" + MINIMAL, "x.yaml")).name == "other"
    assert load_config(write(tmp_path, MINIMAL, "x.yaml"), ["name=set"]).name == "set"


def test_unsafe_file_stem_asks_for_a_name(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, MINIMAL, "my run.yaml"))
    assert "'my run'" in message
    assert "file name" in message


def test_a_run_name_given_the_new_layers_is_held_to_the_rule_for_names(tmp_path: Path) -> None:
    from mlp_cli.train import name_for_overrides

    overrides = ["model.layers=784-8-10"]
    fits = write(tmp_path, f"name: {'a' * 90}\n" + MINIMAL)
    renamed = name_for_overrides(load_config(fits, overrides), overrides)
    assert renamed.name == "a" * 90 + "-784-8-10"
    # a name the config itself would refuse, so that the run could not be resumed from it
    too_long = write(tmp_path, f"name: {'a' * 100}\n" + MINIMAL)
    with pytest.raises(ConfigError) as info:
        name_for_overrides(load_config(too_long, overrides), overrides)
    message = str(info.value)
    assert "model.layers" in message
    assert "--set name=" in message
    assert "name: expected a folder name of at most 100 letters" in message


@pytest.mark.parametrize("name", ["bad\nname.yaml", "bad\tname.yaml"])
def test_a_file_name_holding_a_line_break_is_shown_escaped_on_one_line(
    tmp_path: Path, name: str
) -> None:
    escaped = name.replace("\n", "\\n").replace("\t", "\\t")
    message = config_error(write(tmp_path, MINIMAL, name))  # its stem is no run name
    assert message.startswith(f"{tmp_path / escaped} (the run name comes from the file name")
    missing = config_error(tmp_path / "no" / name)
    assert f"config file '{tmp_path / 'no' / escaped}' not found" in missing
    assert f"(looked for {tmp_path / 'no' / escaped})" in missing
    assert "\n" not in message + missing
    assert "\t" not in message + missing


def test_dump_round_trips(tmp_path: Path) -> None:
    text = (
        "name: '1e3'\n"  # text that the loader would read as a number without quotes
        "data: {input_size: 20, validation_size: 500, mirror: 'http://127.0.0.1:8/m/',"
        " normalize: standardize}\n"
        "model: {layers: 400-30-20-10, hidden_activation: leaky_relu, init: uniform,"
        " init_scale: 0.05, dropout: [0.1, 0.2, 0.3], max_norm: 3.5}\n"
        "loss: mse\nregularization: {l1: 1e-6, l2: 1e-4}\n"
        "optimizer: {name: adamw, lr: 3e-4, eps: 1e-10, weight_decay: 0.05}\n"
        "schedule: {name: onecycle, warmup_epochs: 0.5, min_lr: 1e-7}\n"
        "training: {epochs: 3, batch_size: 32, seed: 9, threads: 1,"
        " early_stopping: {patience: 2, min_delta: 0.001, restore_best: false}}\n"
        "augment: {enabled: true, max_rotation: 15, elastic_alpha: 34.0, elastic_sigma: 4}\n"
        "output: {dir: 'no'}\n"
    )
    cfg = load_config(write(tmp_path, text))
    dumped = dump_config(cfg)
    again = load_config(write(tmp_path, dumped, "dumped.yaml"))
    assert again == cfg
    assert again.name == "1e3"
    assert again.output.dir == "no"
    assert yaml.safe_load(dumped)["optimizer"]["name"] == "adamw"
    assert list(yaml.safe_load(dumped)) == list(Config.model_fields)


def test_config_from_dict_round_trips_and_cites_its_source() -> None:
    cfg = config_from_yaml(MINIMAL + "optimizer: {name: sgd, momentum: 0.9}\n")
    assert config_from_dict(cfg.model_dump(mode="json")) == cfg
    bad = cfg.model_dump(mode="json")
    bad["training"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"^checkpoint m\.npz: training\.epochs: .*found 0\."):
        config_from_dict(bad, source="checkpoint m.npz")


# --- robustness -----------------------------------------------------------------------------


def assert_loads_or_explains(text: str, overrides: Sequence[str] = ()) -> None:
    """Loading either succeeds or raises a `ConfigError` with a message; nothing else escapes."""
    message = None
    try:
        config_from_yaml(text, overrides=overrides)
    except ConfigError as error:
        message = str(error)
    if message is not None:
        assert message.strip()
        assert "\n\n" not in message


YAML_PIECES = st.sampled_from(
    [
        "model:", "layers:", " 784-100-10", "optimizer:", "name:", "lr:", " 1e-3", "training:",
        "epochs:", "\n", "\n  ", "\n    ", "- ", "[", "]", "{", "}", ",", ": ", "'", '"', "&a ",
        "*a", "<<: ", "? ", "!!python/object/apply:os.system ['true']", "!!binary ", "!!set ",
        "!!timestamp 2020-13-45", "!!int x", "!!float y", "!!bool maybe", "!!str ", "---\n",
        "...\n", "%YAML 1.2\n", "# c", "\t", "\x00", "null", "~", ".inf", "0x1F", "0o17",
        "9" * 5000, "é",
    ]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_config_error(text: str) -> None:
    assert_loads_or_explains(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(YAML_PIECES, max_size=30).map("".join))
def test_yaml_like_text_only_raises_config_error(text: str) -> None:
    assert_loads_or_explains(text)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=3))
def test_arbitrary_overrides_only_raise_config_error(overrides: list[str]) -> None:
    assert_loads_or_explains(MINIMAL, overrides)


def test_override_problems_are_reported_with_the_files_in_one_message(tmp_path: Path) -> None:
    text = MINIMAL + "training:\n  epochs: 0\n"
    path = write(tmp_path, text)
    message = config_error(path, ("trainig.epochs=5",))
    lines = message.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:{line_of(text, 'epochs')}: training.epochs:")
    assert lines[1].startswith("--set trainig.epochs=5: unknown key 'trainig'")


def test_reused_anchors_and_aliases_load_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    text = "model: &m {layers: 784-10}\nname: &m x\ntraining: &t {epochs: 2}\n"
    cfg = load_config(write(tmp_path, text + "augment: {enabled: true}\n"))
    assert (cfg.model.layers, cfg.name, cfg.training.epochs) == ([784, 10], "x", 2)
    assert capfd.readouterr() == ("", "")


def test_verbatim_tags_are_held_to_the_same_rule(tmp_path: Path) -> None:
    python = write(tmp_path, MINIMAL + "name: !<tag:yaml.org,2002:python/name:os.system> x\n")
    assert "tag '!!python/name:os.system' is not allowed" in config_error(python)
    # A core-schema tag written out in full is allowed: 3 is then a number, not a name.
    core = write(tmp_path, MINIMAL + "name: !<tag:yaml.org,2002:int> 3\n", "core.yaml")
    assert f"{core}:3: name: expected text, found 3." in config_error(core)


def test_dumped_numbers_are_numbers_to_yaml_1_1_readers_too() -> None:
    cfg = config_from_yaml(MINIMAL + "regularization: {l2: 1e-4}\n")
    dumped = yaml.safe_load(dump_config(cfg))  # PyYAML reads YAML 1.1, where 1e-08 is text
    assert isinstance(cfg.optimizer, AdamConfig)
    assert dumped["optimizer"]["eps"] == cfg.optimizer.eps == 1e-8
    assert dumped["regularization"]["l2"] == 1e-4


def test_every_name_a_config_accepts_is_implemented_and_the_other_way_round() -> None:
    from mlp_cli.activations import ACTIVATIONS
    from mlp_cli.losses import LOSSES, OUTPUTS
    from mlp_cli.optim import SCHEDULES

    def choices(section: type[BaseModel], key: str) -> set[Any]:
        return set(get_args(section.model_fields[key].annotation))

    assert choices(ModelConfig, "hidden_activation") == set(ACTIVATIONS)
    assert choices(ModelConfig, "output_activation") == set(OUTPUTS)
    assert choices(Config, "loss") == set(LOSSES)
    assert choices(ScheduleConfig, "name") == set(SCHEDULES)


@pytest.mark.parametrize("key", ["l1", "l2"])
def test_penalty_weights_are_bounded_below_float32_overflow(key: str) -> None:
    # lambda 1e39 is infinite in float32 weights: training stopped at its first steps with
    # a NaN loss blamed on the learning rate.
    base = "model: {layers: 784-10}\n"
    assert config_from_yaml(base, "c.yaml", [f"regularization.{key}=1000"])
    with pytest.raises(ConfigError, match=f"{key}: expected a number less than or equal to 1000"):
        config_from_yaml(base, "c.yaml", [f"regularization.{key}=1e39"])


def test_epochs_are_bounded_by_what_a_run_history_may_hold() -> None:
    from mlp_cli.limits import MAX_EPOCHS

    base = "model: {layers: 784-10}\n"
    assert config_from_yaml(base, "c.yaml", [f"training.epochs={MAX_EPOCHS}"]).training.epochs
    with pytest.raises(ConfigError, match="less than or equal to 100000, found 100001"):
        config_from_yaml(base, "c.yaml", [f"training.epochs={MAX_EPOCHS + 1}"])
