"""``picaco values list | show NAME``: the built-in value sets and their members."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("values", help="list or show value sets")
    actions = parser.add_subparsers(dest="values_command", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="list the built-in value sets")
    show = actions.add_parser("show", help="show a value set's members and definitions")
    show.add_argument("name", help="built-in name or a YAML/JSON file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from picaco_dspy.objective.values import ValueSet

    if args.values_command == "list":
        for name in ValueSet.builtin_names():
            print(f"{name:<16} {', '.join(ValueSet.builtin(name).names)}")
        return 0
    values = ValueSet.resolve(args.name)
    print(f"{values.name}: {values.description}\n" if values.description else f"{values.name}\n")
    for value in values:
        weight = f" (weight {value.weight:g})" if value.weight != 1 else ""
        print(f"- {value.name}{weight}: {value.definition}")
    return 0
