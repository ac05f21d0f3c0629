"""How PICACO calls provider LMs: its :class:`~picaco_dspy.runtime.retries.RetryPolicy` is the only retry layer, and
every request has a timeout.

DSPy's LMs retry failed requests themselves (``num_retries``, 3 by default); under PICACO's retries the two would
multiply (4 x 5 = 20 requests for one call against a failing provider). So the LM copies PICACO calls during a run
have ``num_retries=0``, and a request to a remote provider gets ``timeout=request_timeout`` unless the LM already
sets one (litellm's own default is 600 s, which leaves a run silent for ten minutes on a hung connection).
In-process engines (the embedded model, scripted test engines) take neither.
"""

from __future__ import annotations

import copy
from typing import Any

import dspy


def call_overrides(lm: Any, request_timeout: float | None) -> dict[str, Any]:
    """The attributes a run's copy of ``lm`` gets: ``num_retries=0`` and, for a remote provider, the timeout."""
    overrides: dict[str, Any] = {}
    if getattr(lm, "num_retries", 0):
        overrides["num_retries"] = 0
    remote = isinstance(getattr(lm, "_engine_spec", None), str)  # custom engine objects run in-process
    if remote and request_timeout is not None and "timeout" not in (getattr(lm, "kwargs", None) or {}):
        overrides["timeout"] = request_timeout
    return overrides


def for_run(lm: Any, request_timeout: float | None, *, cache: bool | None = None) -> Any:
    """A copy of ``lm`` with :func:`call_overrides` applied (``lm`` itself when nothing changes, or None);
    ``cache=False`` also bypasses DSPy's cache (for a retry)."""
    if lm is None:
        return None
    overrides = call_overrides(lm, request_timeout)
    if cache is not None:
        overrides["cache"] = cache
    return lm.copy(**overrides) if overrides else lm


def with_run_lm(component: Any, request_timeout: float | None, *, cache: bool | None = None) -> Any:
    """A shallow copy of a judge or proposer whose ``lm`` (or the configured LM it would use) is :func:`for_run`'s;
    a component without an ``lm`` attribute (a custom proposer) is returned as it is, a wrapper's inner one
    (``.proposer``) is handled too."""
    if hasattr(component, "proposer") and not hasattr(component, "lm"):
        wrapped = copy.copy(component)
        wrapped.proposer = with_run_lm(component.proposer, request_timeout, cache=cache)
        return wrapped
    if not hasattr(component, "lm"):
        return component
    lm = component.lm or dspy.settings.lm
    run_lm = for_run(lm, request_timeout, cache=cache)
    if run_lm is lm and component.lm is lm:
        return component
    changed = copy.copy(component)
    changed.lm = run_lm
    return changed
