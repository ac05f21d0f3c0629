"""``picaco runs``: the PICACO runs kept in a storage."""

from __future__ import annotations

import argparse
import time
from typing import Any

from picaco_dspy.cli.settings import add_storage_argument


def register(sub: Any) -> None:
    parser = sub.add_parser("runs", help="list the PICACO runs kept in a storage")
    add_storage_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from picaco_dspy.runtime.storage_url import redact_url, resolve_storage_url
    from picaco_dspy.runtime.store import RunStore

    url = resolve_storage_url(args.storage)
    store = RunStore(url)
    try:
        runs = store.runs()
    finally:
        store.close()
    if not runs:
        print(f"No runs in {redact_url(url)}.")
    for entry in runs:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["created_at"]))
        print(f"{entry['name']}  started {started}  {entry['results']} stored results")
    return 0
