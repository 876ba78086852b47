from pathlib import Path

import pytest

from loom.settings import AzureCloud, Provider, Settings, SettingsError, load_settings


def test_nothing_configured_is_offline() -> None:
    assert Settings().provider is Provider.OFFLINE


def test_provider_is_inferred_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LOOM_MODEL", "llama3")
    assert (Settings().provider, Settings().model_name) == (Provider.OPENAI, "llama3")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://x.openai.azure.us")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-4o")
    assert (Settings().provider, Settings().model_name) == (Provider.AZURE, "gpt-4o")
    monkeypatch.setenv("LOOM_MODEL_PROVIDER", "offline")
    assert Settings().provider is Provider.OFFLINE  # explicit wins


def test_the_token_scope_follows_the_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().cognitive_scope == "https://cognitiveservices.azure.com/.default"
    monkeypatch.setenv("LOOM_AZURE_CLOUD", "AzureUSGovernment")
    settings = Settings()
    assert settings.azure_cloud is AzureCloud.US_GOVERNMENT
    assert settings.cognitive_scope == "https://cognitiveservices.azure.us/.default"


def test_loom_toml_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "loom.toml"
    config.write_text('query_max_rows = 50\nhome = "/srv/loom"\n')
    monkeypatch.setenv("LOOM_CONFIG", str(config))
    assert (Settings().query_max_rows, Settings().home) == (50, Path("/srv/loom"))
    monkeypatch.setenv("LOOM_QUERY_MAX_ROWS", "7")
    assert Settings().query_max_rows == 7


def test_state_lives_under_loom_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.lakehouse_dir == tmp_path / "lakehouse"
    assert settings.database_path == tmp_path / "loom.db"
    assert settings.resolved_sources_file == tmp_path / "sources.yaml"


def test_bad_configuration_names_each_variable_and_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_QUERY_MAX_ROWS", "lots")
    monkeypatch.setenv("LOOM_AUTH_MODE", "bogus")
    monkeypatch.setenv("LOOM_AZURE_CLOUD", "mars")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "LOOM_QUERY_MAX_ROWS: Input should be a valid integer" in message
    assert "(got 'lots')" in message
    assert "LOOM_AUTH_MODE: Input should be 'dev' or 'entra' (got 'bogus')" in message
    assert "LOOM_AZURE_CLOUD: Input should be 'AzureCloud' or 'AzureUSGovernment'" in message


def test_a_bad_secret_is_named_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(openai_api_key=12345678901234567890)  # not a string
    assert "OPENAI_API_KEY" in str(raised.value)
    assert "12345678901234567890" not in str(raised.value)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (
            {"duckdb_memory_limit": "4GB", "duckdb_process_memory": "1GB"},
            "must exceed LOOM_DUCKDB_MEMORY_LIMIT",
        ),
        ({"duckdb_memory_limit": "1KB"}, "at least 64MiB and at most the machine's memory"),
        ({"duckdb_memory_limit": "150%"}, "at least 64MiB and at most the machine's memory"),
        ({"duckdb_memory_limit": "1000TiB"}, "at least 64MiB and at most the machine's memory"),
        ({"duckdb_memory_limit": "50%", "engines_memory": "40%"}, "must hold two engines"),
        ({"duckdb_memory_limit": "1GB", "engines_memory": "2GB"}, "must hold two engines"),  # probe 7
        ({"duckdb_memory_limit": "lots"}, "not a size"),
        ({"duckdb_process_memory": "300MB"}, "at least 768MiB"),
    ],
)
def test_engine_memory_settings_are_checked_together_and_no_value_is_shown(
    values: dict[str, str], said: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(**values, openai_api_key="sk-not-to-be-shown")
    assert said in str(refused.value)
    assert "sk-not-to-be-shown" not in str(refused.value)
