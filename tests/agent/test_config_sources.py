"""Configuration: defaults, user file, project file, environment, arguments, in that order."""

from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load_config


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_pick_the_embedded_backend_and_journal_under_local_share(tmp_path):
    cfg = load_config(env={}, user_file=None, project_dir=tmp_path)
    assert cfg.backend.kind == "embedded"
    assert cfg.approval.mode == "auto-edit"
    assert cfg.sessions_dir == Path("~/.local/share/dsv4/sessions").expanduser()


def test_later_sources_override_earlier_ones_field_by_field(tmp_path):
    user = _write(
        tmp_path / "home/config.toml",
        """
[backend]
kind = "openai"
model = "deepseek-chat"
[limits]
max_steps = 10
max_cost = 1.5
""",
    )
    project = tmp_path / "proj"
    _write(
        project / ".dsv4.toml",
        """
[limits]
max_steps = 20
[approval]
mode = "ask"
rules = [{tool = "bash", pattern = "git *", action = "allow"}]
""",
    )
    (project / "sub").mkdir()
    env = {
        "DSV4_LIMITS__MAX_STEPS": "30",
        "DSV4_BACKEND__API_MODE": "completions",
        "DEEPSEEK_API_KEY": "sk-test",
        "DSV4_UNRELATED": "x",
    }
    cfg = load_config(
        {"limits.max_wall_time_s": 60}, env=env, user_file=user, project_dir=project / "sub"
    )
    assert cfg.backend.kind == "openai" and cfg.backend.model == "deepseek-chat"  # user file
    assert cfg.limits.max_cost == 1.5  # user file, untouched by the project file
    assert cfg.approval.mode == "ask" and cfg.approval.rules[0].pattern == "git *"  # project
    assert cfg.limits.max_steps == 30  # environment beats both files
    assert cfg.backend.api_mode == "completions"
    assert cfg.backend.api_key.get_secret_value() == "sk-test"
    assert cfg.limits.max_wall_time_s == 60  # arguments last


def test_arguments_beat_the_environment(tmp_path):
    cfg = load_config(
        {"limits": {"max_steps": 3}},
        env={"DSV4_LIMITS__MAX_STEPS": "9"},
        user_file=None,
        project_dir=tmp_path,
    )
    assert cfg.limits.max_steps == 3


def test_a_broken_toml_file_is_named_in_the_error(tmp_path):
    bad = _write(tmp_path / "config.toml", "[backend\nkind=1")
    with pytest.raises(ConfigError, match="config.toml: not valid TOML"):
        load_config(env={}, user_file=bad, project_dir=tmp_path)


def test_an_invalid_value_says_which_field(tmp_path):
    with pytest.raises(ConfigError, match="approval.mode"):
        load_config({"approval.mode": "sometimes"}, env={}, user_file=None, project_dir=tmp_path)


def test_every_config_field_carries_a_docstring():
    def fields(model):
        for name, info in model.model_fields.items():
            yield model.__name__, name, info
            ann = info.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                yield from fields(ann)

    undocumented = [f"{m}.{n}" for m, n, info in fields(AgentConfig) if not info.description]
    assert undocumented == []
