"""A real OpenAI-compatible inference server on loopback: llama-cpp-python's, serving the embedded SmolLM2 GGUF file.

For tests and benchmarks that must talk to a real server. With ``logits_all=True`` the server can echo the prompt's
log-probabilities on ``/v1/completions``. The server is stopped when this process exits, and ``timeout`` bounds its
life even if this process is killed. It needs ``llama-cpp-python[server]`` (a source build of llama.cpp, several
minutes) in this interpreter or in the one named by ``$PICACO_LLAMA_SERVER_PYTHON``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from functools import cache

SERVED_NAME = "smollm2"
LIFETIME_S = 1800  # the server is killed after this long whatever happens to the test process


@dataclass(frozen=True)
class LlamaServer:
    """A running server: ``api_base`` ends in ``/v1``; ``model`` is the litellm string that reaches it."""

    api_base: str
    log_path: str

    @property
    def model(self) -> str:
        return f"openai/{SERVED_NAME}"

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])


def server_python() -> str:
    """The interpreter that has ``llama_cpp.server``: ``$PICACO_LLAMA_SERVER_PYTHON``, else this one."""
    python = os.environ.get("PICACO_LLAMA_SERVER_PYTHON") or sys.executable
    probe = subprocess.run(
        [python, "-c", "import llama_cpp.server"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        raise RuntimeError(f"{python} cannot import llama_cpp.server ({probe.stderr.strip()[-200:]})")
    return python


@cache
def start_llama_server(logits_all: bool = True) -> LlamaServer:
    """Start the server (once per ``logits_all`` per process) and wait until it serves the model.

    Raises:
        RuntimeError: llama-cpp-python's server is not importable, exited, or did not answer within 120 s.
    """
    from picaco_dspy.models.loading import embedded_gguf_path

    python = server_python()
    gguf = embedded_gguf_path()
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="picaco-llama-")
    log_path = os.path.join(folder, "server.log")
    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        SERVED_NAME,
        "--logits_all",
        "true" if logits_all else "false",
        "--n_ctx",
        "1024",
        "--n_threads",
        str(min(os.cpu_count() or 2, 4)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if shutil.which("timeout"):
        command = ["timeout", "--signal=KILL", str(LIFETIME_S), *command]
    log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed at exit with the server
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()

    atexit.register(stop)
    api_base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                raise RuntimeError(f"the server exited with {process.returncode}: {handle.read()[-600:]}")
        try:
            with urllib.request.urlopen(f"{api_base}/models", timeout=2) as reply:
                served = [m["id"] for m in json.load(reply)["data"]]
            if SERVED_NAME in served:
                return LlamaServer(api_base=api_base, log_path=log_path)
        except OSError:
            time.sleep(0.3)
    stop()
    raise RuntimeError("the server did not answer within 120 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
