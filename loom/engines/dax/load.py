"""A semantic model folder → the model, checked, and where each table's rows are.

The folder is one of: a `model.bim` (TMSL), a TMDL `definition/` folder (or a PBIP project's
`<Name>.SemanticModel` folder holding either), or the extracted sample layout (`samples.py`). A
table's rows come from the lakehouse table its Direct Lake partition names (`schema.entity`, in the
lakehouse the source names, else the nearest folder above the model that has that table), or from
`tables/<Table>.parquet`, `tables/<Table>.csv` or a Delta folder `tables/<Table>/` beside the
model. A table with no rows to be found is left out with the reason, and the others serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loom.engines.dax.model import ModelError, SemanticModel, check
from loom.engines.dax.samples import is_sample_folder, load_sample
from loom.engines.dax.tmdl import is_tmdl_folder, load_tmdl
from loom.engines.dax.tmsl import load_bim
from loom.engines.sql.duckdb_open import _table_name

TABLE_FILES = (".parquet", ".csv")


@dataclass
class LoadedModel:
    model: SemanticModel
    data_root: Path  # the folder whose tables the SQL engine loads
    tables: dict[str, tuple[str, str]] = field(default_factory=dict)  # model table (lower) → (schema, table)
    missing: dict[str, str] = field(default_factory=dict)  # model table (lower) → why it has no rows


def load_model(folder: Path, lakehouse: Path | None = None) -> LoadedModel:
    model, base = read_model(folder)
    check(model)
    return _locate(model, base, lakehouse)


def read_model(folder: Path) -> tuple[SemanticModel, Path]:
    """The model, and the folder its `tables/` would be in."""
    if not folder.is_dir():
        raise ModelError(f"{folder.name} is not a folder")
    if (folder / "model.bim").is_file():
        return load_bim(folder / "model.bim"), folder
    if is_tmdl_folder(folder / "definition"):
        return load_tmdl(folder / "definition", folder.name.removesuffix(".SemanticModel")), folder
    if is_sample_folder(folder):
        return load_sample(folder), folder
    projects = sorted(folder.glob("*.SemanticModel"))
    if len(projects) == 1:
        return read_model(projects[0])
    if folder.name == "definition" and is_tmdl_folder(folder):
        return load_tmdl(folder, folder.parent.name.removesuffix(".SemanticModel")), folder.parent
    raise ModelError(
        f"no semantic model found in {folder.name}: expected model.bim (TMSL), a definition/ folder "
        "of .tmdl files, or a PBIP project's .SemanticModel folder"
    )


def _locate(model: SemanticModel, base: Path, lakehouse: Path | None) -> LoadedModel:
    entities = {
        k: t.data for k, t in model.tables.items() if "." in t.data and not t.data.startswith("tables/")
    }
    if entities:
        root = lakehouse or _lakehouse_above(base, next(iter(entities.values())))
        loaded = LoadedModel(model, root)
        for key, where in entities.items():
            schema, _, entity = where.partition(".")
            if _table_path(root / schema, entity) is None:
                loaded.missing[key] = f"the lakehouse has no table {where}"
            else:
                loaded.tables[key] = (_table_name(root / schema), _table_name(root / schema / entity))
        for key in model.tables.keys() - entities.keys():
            loaded.missing[key] = "its rows are not in the lakehouse (no Direct Lake partition)"
        return loaded
    loaded = LoadedModel(model, base / "tables")
    for key, table in model.tables.items():
        path = _table_path(base / "tables", table.name)
        if path is None:
            loaded.missing[key] = f"no tables/{table.name}.parquet, .csv or Delta folder beside the model"
        else:
            loaded.tables[key] = ("main", _table_name(path))
    return loaded


def _table_path(folder: Path, name: str) -> Path | None:
    """`name`'s Delta folder, Parquet or CSV file in `folder`, its name's case aside (a model's
    `Sales` may be read from `sales.parquet`)."""
    if not folder.is_dir():
        return None
    wanted = {name.lower(), *(f"{name}{s}".lower() for s in TABLE_FILES)}
    for path in sorted(folder.iterdir()):
        if path.name.lower() not in wanted:
            continue
        if (
            path.is_dir()
            and (path / "_delta_log").is_dir()
            or path.is_file()
            and path.suffix.lower() in TABLE_FILES
        ):
            return path
    return None


def _lakehouse_above(base: Path, where: str) -> Path:
    schema, _, entity = where.partition(".")
    for folder in [base, *base.parents]:
        if _table_path(folder / schema, entity) is not None:
            return folder
    raise ModelError(f"no lakehouse with the table {where} was found above the model; name one (lakehouse:)")
