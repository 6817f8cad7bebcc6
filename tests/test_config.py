import subprocess
import sys

import pytest

from verifrl.config import Config, ConfigError
from verifrl.config_loading import load_config, parse_override

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
        ("loss.type=ppo", "loss.type: unknown loss aggregation 'ppo'; valid: bnpo, dapo, dr_grpo, grpo"),
        ("rollout.group_size=0", "rollout.group_size must be >= 2"),
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


@pytest.mark.parametrize("override, message", [
    ("advantage.estimator=grpp", "advantage.estimator: unknown advantage estimator 'grpp' (did you mean 'grpo'?)"),
    ("advantage.mode=proces", "advantage.mode: unknown advantage mode 'proces' (did you mean 'process'?)"),
    ("advantage.step_credit=first_error",
     "advantage.step_credit=first_error needs step rewards: advantage.mode process or outcome+process"),
    ("advantage.scale_rewards=grup", "advantage.scale_rewards: unknown reward scaling 'grup' (did you mean 'group'?)"),
    ("loss.type=dapoo", "loss.type: unknown loss aggregation 'dapoo' (did you mean 'dapo'?)"),
    ("loss.objective=ppo_clp", "loss.objective: unknown policy objective 'ppo_clp' (did you mean 'ppo_clip'?)"),
    ("loss.importance_level=sequnce", "loss.importance_level: unknown importance level 'sequnce' (did you mean 'sequence'?)"),
    ("loss.kl_estimator=k3_ration", "loss.kl_estimator: unknown KL estimator 'k3_ration' (did you mean 'k3_ratio'?)"),
    ("rollout.engine=lop", "rollout.engine: unknown rollout engine 'lop' (did you mean 'loop'?)"),
    ("rollout.dynamic_sampling=refil", "rollout.dynamic_sampling: unknown dynamic sampling mode 'refil' (did you mean 'refill'?)"),
    ("reward.verifiers=[{name: maht}]", "reward.verifiers[0].name: unknown verifier 'maht' (did you mean 'math'?)"),
    ("reward.verifiers=[{name: nosuchmodule_xyz:f}]", "reward.verifiers[0].name: cannot import module 'nosuchmodule_xyz'"),
    ("reward.verifiers=[{name: math, weight: .nan}]", "reward.verifiers[0].weight must be a finite number, got nan"),
    ("rollout.group_size=1", "a group of one has advantage 0 and never learns"),
    ("advantage.estimator=rloo|advantage.scale_rewards=batch", "only applies to estimator 'grpo'"),
    ("trainer.lr=.inf", "trainer.lr must be a finite number > 0"),
    ("rollout.top_k=-1", "rollout.top_k must be >= 0"),
])
def test_every_registry_name_and_impossible_value_fails_at_load_time(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(RECIPE, override.split("|"))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_group_of_one_is_allowed_for_process_supervision_alone():
    assert load_config(RECIPE, ["rollout.group_size=1", "advantage.mode=process"]).rollout.group_size == 1


def test_a_quoted_string_stays_a_string_and_an_unquoted_exponent_is_a_number(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text('data:\n  path: "1e3"\ntrainer:\n  lr: 3e-5\n')
    cfg = load_config(recipe)
    assert cfg.data.path == "1e3" and cfg.trainer.lr == pytest.approx(3e-5)
    cfg = load_config(None, ['data.path="1e3"', "data.system_prompt=1e3", "trainer.lr=1e3",
                             "data.prompt_template=Q: {question}"])
    assert (cfg.data.path, cfg.data.system_prompt, cfg.trainer.lr) == ("1e3", "1e3", 1000.0)
    assert cfg.data.prompt_template == "Q: {question}"
    recipe.write_text('trainer:\n  lr: "3e-5"\n')
    with pytest.raises(ConfigError, match="trainer.lr: expected a number, got '3e-5'"):
        load_config(recipe)


def test_dry_run_fails_on_an_unknown_name_before_loading_a_model():
    out = subprocess.run([sys.executable, "-m", "verifrl", "train", RECIPE, "--dry-run", "advantage.estimator=grpp"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "advantage.estimator: unknown advantage estimator 'grpp'" in out.stderr + out.stdout


def test_the_config_schema_imports_neither_torch_nor_transformers():
    code = ("import sys, verifrl.config\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
