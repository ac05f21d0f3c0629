"""The real server for the tests (:mod:`picaco_dspy.testing.llama_server`), or a skip naming the reason.

It needs ``llama-cpp-python[server]`` (a source build of llama.cpp, about 7-9 minutes on two cores; ``.ci/run`` does
it). Without it the tests are skipped with the reason, except when ``PICACO_REQUIRE_LLAMA_SERVER=1`` (set by
``.ci/run``): then they fail.
"""

from __future__ import annotations

import os

import pytest

from picaco_dspy.testing.llama_server import LlamaServer, start_llama_server


def llama_server(*, logits_all: bool = True) -> LlamaServer:
    """The shared server, started on first use, or skip/fail the test with the reason.

    ``logits_all=False`` starts a server as most people run it: it cannot echo prompt log-probabilities.
    """
    try:
        return start_llama_server(logits_all)
    except Exception as exc:  # noqa: BLE001 - every reason is reported to the user
        reason = f"no llama-cpp-python server: {' '.join(str(exc).split())[:400]}"
        if os.environ.get("PICACO_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(reason + " (PICACO_REQUIRE_LLAMA_SERVER=1: CI must test against the real server)")
        pytest.skip(reason + "; install llama-cpp-python[server] (see .ci/run) or set PICACO_LLAMA_SERVER_PYTHON")
