"""Passage vectors beside an index: unit-length float32 rows (`vectors.npy`) in the order of their
chunk ids (`vector_ids.json`), searched exactly by one matrix product (100 k passages of 1,536
dimensions is 600 MB; an index that large wants Azure AI Search's vector index instead)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Vectors:
    ids: list[str]
    matrix: Matrix

    @classmethod
    def empty(cls) -> Vectors:
        return cls([], np.zeros((0, 0), dtype=np.float32))

    @classmethod
    def load(cls, folder: Path) -> Vectors | None:
        if not (folder / "vectors.npy").is_file():
            return None
        ids = json.loads((folder / "vector_ids.json").read_text(encoding="utf-8"))
        return cls(list(ids), np.load(folder / "vectors.npy", mmap_mode="r"))

    def save(self, folder: Path) -> None:
        np.save(folder / "vectors.npy", np.asarray(self.matrix, dtype=np.float32))
        (folder / "vector_ids.json").write_text(json.dumps(self.ids))

    def without(self, documents: set[str]) -> Vectors:
        """Without the passages of these documents (chunk ids are `<document id>#<n>`)."""
        keep = [i for i, c in enumerate(self.ids) if c.rpartition("#")[0] not in documents]
        return Vectors(
            [self.ids[i] for i in keep], np.asarray(self.matrix)[keep] if self.ids else self.matrix
        )

    def with_added(self, ids: Sequence[str], rows: Sequence[Sequence[float]]) -> Vectors:
        added = unit(np.asarray(rows, dtype=np.float32))
        matrix = added if not self.ids else np.vstack([np.asarray(self.matrix), added])
        return Vectors([*self.ids, *ids], matrix)

    def nearest(self, query: Sequence[float], top: int) -> list[tuple[str, float]]:
        if not self.ids:
            return []
        scores = np.asarray(self.matrix) @ unit(np.asarray([query], dtype=np.float32))[0]
        best = np.argsort(-scores)[:top]
        return [(self.ids[i], float(scores[i])) for i in best]


def unit(rows: Matrix) -> Matrix:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms == 0, 1, norms)).astype(np.float32)
