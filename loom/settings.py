"""One `Settings` object: the only place that reads the environment (DESIGN.md, Layout).

Sources, in priority order: explicit arguments, environment (`LOOM_*` and the standard
`AZURE_OPENAI_*` / `OPENAI_*` names), a `.env` file, then `loom.toml` (path in `LOOM_CONFIG`).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from loom.engines.bounds import MAX_RESULT_BYTES
from loom.engines.sql.limits import size_bytes


class Provider(StrEnum):
    AZURE = "azure"
    OPENAI = "openai"
    OFFLINE = "offline"


class AzureCloud(StrEnum):
    PUBLIC = "AzureCloud"
    US_GOVERNMENT = "AzureUSGovernment"


# Token scope and authority by cloud: a credential object left to itself would use the commercial
# scope even in Azure Government, so the scope is always chosen here.
COGNITIVE_SCOPE = {
    AzureCloud.PUBLIC: "https://cognitiveservices.azure.com/.default",
    AzureCloud.US_GOVERNMENT: "https://cognitiveservices.azure.us/.default",
}
LOGIN_AUTHORITY = {
    AzureCloud.PUBLIC: "https://login.microsoftonline.com",
    AzureCloud.US_GOVERNMENT: "https://login.microsoftonline.us",
}


MIN_PROCESS_MEMORY = 768 << 20
MIN_DUCKDB_MEMORY = 64 << 20


def _machine() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# How the query-writing model is shown a source's tables (`loom/tools/schema_prompt.py`).
SchemaForm = Literal["lines", "create"]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _config_file() -> Path:
    # The one deliberate environment read outside the model: where the config file lives.
    return Path(os.environ.get("LOOM_CONFIG", "loom.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOM_", env_file=".env", extra="ignore", populate_by_name=True
    )

    home: Path = Field(default=Path(".loom"), description="All embedded state lives under it.")

    # --- model -----------------------------------------------------------------------------
    model_provider: Provider | None = None
    azure_openai_endpoint: str | None = Field(None, validation_alias=_env("AZURE_OPENAI_ENDPOINT"))
    azure_openai_deployment: str | None = Field(None, validation_alias=_env("AZURE_OPENAI_DEPLOYMENT"))
    azure_openai_api_version: str = Field("2024-10-21", validation_alias=_env("AZURE_OPENAI_API_VERSION"))
    azure_openai_api_key: SecretStr | None = Field(None, validation_alias=_env("AZURE_OPENAI_API_KEY"))
    azure_cloud: AzureCloud = Field(
        AzureCloud.PUBLIC, validation_alias=_env("LOOM_AZURE_CLOUD", "AZURE_CLOUD")
    )
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    model: str | None = Field(None, validation_alias=_env("LOOM_MODEL"))
    embedding_model: str | None = Field(
        None, description="An embeddings model (or Azure deployment) for schema linking; off when unset."
    )
    model_max_retries: int = Field(3, ge=0, le=10)
    model_temperature: float | None = Field(
        None,
        ge=0,
        le=2,
        description="Sampling temperature sent with every call; unset: the endpoint's default.",
    )
    model_max_output_tokens: int | None = Field(
        1024,
        ge=16,
        description="Most tokens one model call may generate: a small model told to call a tool can "
        "otherwise generate without end. Unset (empty) to send no limit.",
    )
    model_timeout_s: float = Field(60.0, gt=0)
    model_max_reply_chars: int = Field(
        262_144,
        ge=1_024,
        description="Most characters of text and tool arguments one model reply may hold: an endpoint "
        "that ignores max_tokens is stopped there (model_error), not held, sent and stored whole.",
    )
    max_tool_calls_per_reply: int = Field(
        16,
        ge=1,
        description="Most tool calls one model reply may make: past it the call ends as model_error "
        "(a reply of 5,000 calls cost 59 s of the server's CPU).",
    )
    model_deadline_s: float = Field(
        300.0,
        gt=0,
        description="Longest one model call may take, retries included (LOOM_MODEL_TIMEOUT_S bounds "
        "each wait for a byte: a server that sends a byte at a time within it would hold a turn).",
    )
    max_model_calls_per_turn: int = Field(10, ge=1)
    max_tool_rounds: int = Field(4, ge=1)
    max_turns_per_user: int = Field(
        4,
        ge=1,
        description="Most turns one user may have running at once (in this process); past it a "
        "question gets 429 `too_many_turns`. It bounds how far a user can store past their quota.",
    )
    max_conversation_messages: int = Field(
        2_000,
        ge=10,
        description="Most messages one conversation may hold (a turn adds 2-10); past it, a question "
        "must start a new conversation (409 `conversation_full`)",
    )
    max_user_store_bytes: int = Field(
        256 * 2**20,
        ge=2**20,
        description="Most bytes one user's conversations may hold in the store; past it, a turn is "
        "refused (409 `storage_quota_exceeded`) until the user deletes conversations",
    )
    max_tenant_store_bytes: int = Field(
        8 * 2**30,
        ge=2**20,
        description="Most bytes one tenant's conversations may hold; past it, the tenant's turns are "
        "refused the same way (the store is shared: one tenant must not fill its disk)",
    )
    history_max_chars: int = Field(
        60_000,
        ge=1_000,
        description="How much of the conversation so far each model call reads (~4 characters a token); "
        "whole turns, newest first, earlier tool results shortened. Lower it for small-context models.",
    )
    model_tracing: bool = Field(
        False,
        description="Wrap model calls in MAF's OpenTelemetry layer (a span per call, with token counts). "
        "Spans go to the process's OpenTelemetry tracer provider; off, the layer is not in the call path.",
    )

    # --- data ------------------------------------------------------------------------------
    sources_file: Path | None = None
    default_source: str = "sales"
    query_max_rows: int = Field(1000, ge=1, le=1_000_000_000)
    query_max_bytes: int = Field(
        MAX_RESULT_BYTES,
        ge=1024,
        description="About how many bytes of rows one query may return (as JSON); more is cut and marked.",
    )
    query_timeout_s: float = Field(30.0, gt=0)
    max_repairs: int = Field(2, ge=0, le=5)
    repair_empty_results: bool = Field(
        True,
        description="A generated query that runs but returns no rows is sent back to the model once "
        "(while a repair is left), with what usually causes it; the first query stands if the new "
        "one finds nothing either.",
    )
    schema_form: SchemaForm = Field(
        "lines",
        description="How the query-writing model sees the schema: `lines` (one line per table, then "
        "the joins) or `create` (CREATE TABLE statements with FOREIGN KEY clauses and sample values "
        "as comments).",
    )
    schema_link_above_columns: int = Field(
        60,
        ge=0,
        description="Sources with more columns than this show the query-writing model only the tables "
        "and columns linked to the question; smaller ones are shown whole.",
    )
    query_workers: int = Field(8, ge=1, description="Threads that run queries, for all tenants.")
    query_per_tenant: int = Field(4, ge=1, description="Queries one tenant may run at once.")
    query_per_source: int | None = Field(
        None,
        ge=1,
        description="Queries that may run at once on one source, handed out fairly by tenant like the "
        "workers (default: as many as there are workers, no separate share). About one per core "
        "keeps one source's heavy queries from slowing the others on it past their time limit, but "
        "makes everyone on the source wait behind them.",
    )
    query_per_user: int = Field(2, ge=1, description="Queries one user may run at once.")
    turn_result_bytes: int | None = Field(
        None,
        ge=64 * 1024,
        description="Bytes of query results one turn may hold (default: twice the query bound). A query "
        "may return what is left (at most its own bound); past it a query is refused (result_budget) "
        "with why.",
    )
    tenant_result_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes of query results one tenant's turns may hold at once.",
    )
    result_bytes_total: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes of query results all turns of this process may hold at once (results take "
        "about 3.5 times this in memory, as rows and as the JSON sent and stored).",
    )
    query_wait_s: float = Field(
        45.0,
        gt=0,
        description="How long a query waits for a place before it is refused (busy). Longer than the "
        "query time limit, so that when slow queries fill every worker a waiting one gets the next "
        "that finishes or is stopped, instead of being refused.",
    )
    duckdb_memory_limit: str = Field(
        "25%",
        description="Memory one embedded source's DuckDB may use, shared by its queries (`25%` of the "
        "machine, `4GB`); a query past it fails with out_of_memory and the source keeps serving.",
    )
    duckdb_threads: int | None = Field(
        None, ge=1, description="Threads per embedded source (default: one per core)."
    )
    duckdb_max_temp_size: str = Field(
        "4GiB", description="Disk one embedded source may spill to, under $LOOM_HOME/duckdb-tmp."
    )
    engine_processes: bool = Field(
        True,
        description="Run each embedded source's engine in a child process of its own, with its memory "
        "bounded by the operating system and the process killed when a query outlives its time limit "
        "(one value built past DuckDB's own limits then costs that query, not the server). Off: in "
        "the server's process, for debugging.",
    )
    duckdb_process_memory: str | None = Field(
        None,
        description="Resident memory one embedded source's engine process may hold (`6GB`); past it "
        "the process is killed and the query that grew it fails with out_of_memory. Default: the "
        "DuckDB memory limit plus 1 GiB.",
    )

    engines_memory: str = Field(
        "60%",
        description="What all embedded sources' engine processes may hold together (`12GB`, `60%` of "
        "the machine: two sources using their whole pool, with their runtimes); past it, the largest "
        "holding more than its pool is killed and its query fails with out_of_memory, else the largest "
        "is restarted and its calls sent again.",
    )
    engine_idle_s: float = Field(
        600.0,
        gt=0,
        description="An embedded source's engine process that has served nothing this long is "
        "stopped (the next question starts it again, about a second with the load).",
    )

    @field_validator("duckdb_memory_limit", "duckdb_max_temp_size", "engines_memory")
    @classmethod
    def _a_size(cls, value: str) -> str:
        size_bytes(value)  # ValueError: "not a size: …"
        return value

    @model_validator(mode="after")
    def _engine_memory_fits(self) -> Settings:
        """DuckDB's memory limit must leave the process room (or the process is killed where
        DuckDB would have spilled), and be a limit DuckDB can work within."""
        limit = size_bytes(self.duckdb_memory_limit)
        if limit < MIN_DUCKDB_MEMORY or limit > _machine():
            raise ValueError(
                "LOOM_DUCKDB_MEMORY_LIMIT must be at least 64MiB and at most the machine's memory"
            )
        if size_bytes(self.engines_memory) < 2 * (limit + MIN_PROCESS_MEMORY // 3):
            raise ValueError(
                "LOOM_ENGINES_MEMORY must hold two engines at their whole LOOM_DUCKDB_MEMORY_LIMIT, with "
                "their runtimes (at least 2 × (the limit + 256MiB)): below that, two sources spilling "
                "legitimately restart each other"
            )
        process = self.duckdb_process_memory
        if process is not None and size_bytes(process) < limit + MIN_PROCESS_MEMORY // 3:
            raise ValueError(
                "LOOM_DUCKDB_PROCESS_MEMORY must exceed LOOM_DUCKDB_MEMORY_LIMIT by at least 256MiB "
                "(the engine's runtime lives beside DuckDB's memory)"
            )
        return self

    @field_validator("duckdb_process_memory")
    @classmethod
    def _room_for_the_runtime(cls, value: str | None) -> str | None:
        if value is not None and size_bytes(value) < MIN_PROCESS_MEMORY:
            raise ValueError("an engine process needs at least 768MiB (its runtime alone holds ~250 MB)")
        return value

    verified_match_threshold: float = Field(0.8, gt=0, le=1)
    databricks_token: SecretStr | None = Field(
        None, description="Databricks personal access token; without it, Entra ID is used."
    )

    # --- server ----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth_mode: Literal["dev", "entra"] = "dev"
    entra_tenant_id: str | None = None
    entra_audience: str | None = None
    entra_allowed_tenants: list[str] = Field(default_factory=list)
    group_roles: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Roles given to members of Entra groups, by group object id (JSON: "
        '{"<group-id>": ["Sales.Reader"]}); a source\'s `allow` names roles. App roles in the token '
        "need no mapping.",
    )
    max_message_bytes: int = 32 * 1024
    max_request_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="A request body over this is refused (413) as it arrives, before it is parsed.",
    )
    request_header_timeout_s: float = Field(
        15.0,
        gt=0,
        description="A connection whose request headers have not all arrived this long after it "
        "opened (or after its last response) is closed: idle half-open connections must not hold "
        "the server's file descriptors.",
    )
    response_stall_s: float = Field(
        60.0,
        gt=0,
        description="A client that takes none of a response's waiting bytes for this long has its "
        "connection aborted and the bytes freed (a reader that stops reading must not hold them).",
    )
    max_connections: int = Field(
        4096,
        ge=16,
        description="Open HTTP connections the server keeps (at most its file-descriptor limit less "
        "256); past it a new connection is closed at once.",
    )
    request_body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body that has not fully arrived this long after its first byte was "
        "awaited is refused (408): a client trickling its body must not hold a handler.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (e.g. the console's https://console.example.gov) whose pages may call the "
        "API from a browser; none by default.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="`loom serve`'s log level; at info, one line per turn (ids, counts, outcome)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    @property
    def provider(self) -> Provider:
        """The explicit provider, else inferred from which endpoint variables are set."""
        if self.model_provider is not None:
            return self.model_provider
        if self.azure_openai_endpoint:
            return Provider.AZURE
        if self.openai_base_url or self.openai_api_key:
            return Provider.OPENAI
        return Provider.OFFLINE

    @property
    def model_name(self) -> str:
        if self.provider is Provider.AZURE:
            return self.azure_openai_deployment or self.model or ""
        return self.model or "gpt-4o-mini"

    @property
    def cognitive_scope(self) -> str:
        return COGNITIVE_SCOPE[self.azure_cloud]

    @property
    def lakehouse_dir(self) -> Path:
        return self.home / "lakehouse"

    @property
    def storms_dir(self) -> Path:
        """The StormEvents sample (`loom data seed`), which the agent asks in KQL."""
        return self.home / "storms"

    @property
    def graph_dir(self) -> Path:
        """The sample graph (`loom data seed`), the lakehouse's relationships asked in Gremlin."""
        return self.home / "graph"

    def ensure_home(self) -> Path:
        """The state folder, made the owner's alone (0700) when this creates it: it holds the
        conversations."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.home

    @property
    def duckdb_temp_dir(self) -> Path:
        return self.home / "duckdb-tmp"

    @property
    def database_path(self) -> Path:
        return self.home / "loom.db"

    @property
    def resolved_sources_file(self) -> Path:
        return self.sources_file or self.home / "sources.yaml"


# Every default in one place: what Settings holds before the environment or a file is read.
DEFAULTS = Settings.model_construct()


# --- reading it, with errors a person can act on ----------------------------------------------------

_SECRET_HINTS = ("key", "token", "secret", "password")


class SettingsError(ValueError):
    """The configuration cannot be used; the message names each variable and what is wrong."""


def load_settings(**values: Any) -> Settings:
    """`Settings(**values)`, with a SettingsError naming the variables instead of a pydantic dump."""
    try:
        return Settings(**values)
    except ValidationError as e:
        problems = "; ".join(_problem(p) for p in e.errors())
        raise SettingsError(f"the configuration has problems: {problems}") from e


def settings_for(home: Path | None = None) -> Settings:
    """The settings, with `home` (a command's --home) over LOOM_HOME when given."""
    return load_settings(home=home) if home else load_settings()


def _problem(problem: Any) -> str:
    if not problem["loc"]:  # a check across settings: it names them; its input is every value
        return str(problem["msg"]).removeprefix("Value error, ")
    name = str(problem["loc"][0])
    shown = f"{_variable(name)}: {problem['msg']}"
    if problem.get("input") is not None and not any(h in name.lower() for h in _SECRET_HINTS):
        shown += f" (got {str(problem['input'])[:80]!r})"  # never a key's value, even a wrong one
    return shown


def _variable(name: str) -> str:
    """The environment variable(s) a field is read from (loom.toml uses the field's own name)."""
    field = Settings.model_fields.get(name)
    if field is None:
        return name  # already the alias the value came in by
    if isinstance(field.validation_alias, AliasChoices):
        return " or ".join(str(choice) for choice in field.validation_alias.choices)
    return f"LOOM_{name.upper()}"
