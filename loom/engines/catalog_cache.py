"""A cloud source's catalog, kept: read on first use and again once it is `max_age_s` old.

Reading a service's catalog costs a round trip or several (and request units on Cosmos DB), and
every question reads the catalog, so engines keep it. One thread reads at a time; the others wait
for its answer rather than starting reads of their own. A failed re-read keeps the catalog in hand
(the service may be back soon, and what it held a few minutes ago is the best guess); a failed
first read raises, since there is nothing to keep.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from loom.engines.contracts import Catalog, QueryError

log = logging.getLogger(__name__)

CATALOG_MAX_AGE_S = 900.0  # a catalog this old is read again (new tables, columns, descriptions)


class KeptCatalog:
    def __init__(
        self, read: Callable[[], Catalog], service: str, max_age_s: float = CATALOG_MAX_AGE_S
    ) -> None:
        self._read, self._service, self._max_age_s = read, service, max_age_s
        self._reading = threading.Lock()  # held while the catalog is read
        self._state = threading.Lock()  # held only to read or set the two fields below
        self._catalog: Catalog | None = None
        self._read_at = -math.inf

    def get(self) -> Catalog:
        loaded = self.loaded()
        if loaded is not None:
            return loaded
        with self._reading:
            loaded = self.loaded()  # another thread may have read it meanwhile
            return loaded if loaded is not None else self._refresh()

    def loaded(self) -> Catalog | None:
        """The catalog when one is in hand and fresh; None otherwise (never a read)."""
        with self._state:
            fresh = time.monotonic() - self._read_at < self._max_age_s
            return self._catalog if fresh else None

    def _refresh(self) -> Catalog:
        with self._state:
            known = self._catalog
        try:
            catalog = self._read()
        except QueryError as e:
            if known is None:
                raise
            log.warning(
                "re-reading the %s catalog failed; keeping the one in hand: %s", self._service, e.message
            )
            catalog = known
        with self._state:
            self._catalog, self._read_at = catalog, time.monotonic()
        return catalog
