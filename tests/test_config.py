import pytest

from verifrl.config import Config, ConfigError, load_config, parse_override

RECIPE = "recipes/tiny-arith.yaml"


def test_recipe_loads_and_overrides_apply():
    cfg = load_config(RECIPE, ["trainer.lr=3e-5", "rollout.group_size=4", "loss.epsilon_high=null",
                               "reward.verifiers=[{name: math, weight: 2.0}]"])
    assert isinstance(cfg, Config)
    assert cfg.trainer.lr == pytest.approx(3e-5)
    assert cfg.rollout.group_size == 4
    assert cfg.loss.epsilon_high is None
    assert cfg.reward.verifiers[0].weight == 2.0


def test_defaults_work_without_a_recipe():
    cfg = load_config(None, [])
    assert cfg.model.name_or_path == "embedded:tiny-arith"
    assert cfg.reward.verifiers[0].name == "math"


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.lrr=1e-4", "unknown config key 'trainer.lrr' (did you mean trainer.lr?)"),
        ("trainer.lr=fast", "trainer.lr: expected a number, got 'fast'"),
        ("rollout.group_size=2.5", "rollout.group_size: expected an integer, got 2.5"),
        ("loss.type=ppo", "loss.type: must be one of"),
        ("rollout.group_size=0", "rollout.group_size must be >= 1"),
        ("model.name_or_path=/nonexistent/model", "model.name_or_path: no model directory at /nonexistent/model"),
        ("trainer", "override 'trainer' must look like section.key=value"),
        ("logging.progress=maybe", "logging.progress: expected true or false"),
        ("logging.wandb=off", "got False (YAML read a bare on/off/yes/no as a boolean)"),
    ],
)
def test_bad_config_gives_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(RECIPE, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_config(tmp_path / "nope.yaml")


def test_unknown_key_inside_recipe_is_named(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  group_sise: 4\n")
    with pytest.raises(ConfigError, match="unknown config key 'rollout.group_sise'"):
        load_config(recipe)


def test_override_values_are_read_as_yaml():
    assert parse_override("a.b=3e-5") == ("a.b", 3e-5)
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=hello") == ("a.b", "hello")
