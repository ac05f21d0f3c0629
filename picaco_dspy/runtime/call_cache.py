"""Every LM answer a run paid for, shared through the run storage: a resumed or parallel worker on another machine
gets the answers of calls it did not make itself, so a job of several calls (a two-predictor program) that was cut
between its calls repays none of them.

DSPy keeps answers in ``dspy.cache`` (memory and a local disk folder). During a run with a persistent storage,
:func:`shared_call_cache` puts :class:`RunCallCache` in front of it: a miss there is looked up in the storage's
``picaco_calls`` table, and every answer DSPy stores is also written there. Only DSPy's plain-data records (JSON) are
shared, never pickles. Calls made with ``cache=False`` (retries) neither read nor write it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import dspy

from picaco_dspy.runtime.store import RunStore

logger = logging.getLogger(__name__)


class RunCallCache:
    """``dspy.cache`` with the run storage behind it (see the module docstring)."""

    def __init__(self, inner: Any, store: RunStore, run: str) -> None:
        self.inner, self.store, self.run = inner, store, run
        self.shared_hits = 0

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        record = self.inner.get(request, ignored_args_for_cache_key)
        if record is not None:
            return record
        stored = self.store.get_call(self.run, self.inner.cache_key(request, ignored_args_for_cache_key))
        if stored is None:
            return None
        self.shared_hits += 1
        record = json.loads(stored)
        self.inner.put(request, record, ignored_args_for_cache_key)
        return record

    def put(
        self,
        request: dict[str, Any],
        value: Any,
        ignored_args_for_cache_key: list[str] | None = None,
        enable_memory_cache: bool = True,
    ) -> None:
        self.inner.put(request, value, ignored_args_for_cache_key, enable_memory_cache)
        if not (isinstance(value, dict) and "_dspy_format" in value):
            return  # a provider SDK object: kept in DSPy's own cache only
        try:
            record = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            return
        self.store.put_call(self.run, self.inner.cache_key(request, ignored_args_for_cache_key), record)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def shared_call_cache(store: RunStore, run: str) -> Iterator[RunCallCache | None]:
    """Share the run's LM answers through ``store`` while the block runs (nothing happens for an in-memory run)."""
    if not store.persistent or isinstance(dspy.cache, RunCallCache):
        yield None
        return
    inner = dspy.cache
    shared = RunCallCache(inner, store, run)
    dspy.cache = shared
    try:
        yield shared
    finally:
        dspy.cache = inner
        if shared.shared_hits:
            logger.info("%d LM answers came from the run storage instead of the provider", shared.shared_hits)
