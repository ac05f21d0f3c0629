"""Value compositions: the named sets of human values that PICACO aligns a program to."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from picaco_dspy._validation import excerpt, read_text_file
from picaco_dspy.errors import ValueSetError

_BUILTIN_PACKAGE = "picaco_dspy.objective.value_sets"


@dataclass(frozen=True)
class Value:
    """One human value of a composition.

    Attributes:
        name: Short name, unique within its set (e.g. ``"Universalism"``).
        definition: One or two sentences saying what honouring the value means for a response.
        weight: Relative importance in the conformity sum (positive; default 1).
    """

    name: str
    definition: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueSetError("A value needs a non-empty string `name`.")
        _check_value_name(self.name)
        if not isinstance(self.definition, str) or not self.definition.strip():
            raise ValueSetError(
                f"Value {self.name!r} has no definition: give each value a `definition` saying what honouring it means."
            )
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)):
            raise ValueSetError(f"Value {self.name!r} has weight {self.weight!r}: weights must be positive numbers.")
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise ValueSetError(f"Value {self.name!r} has weight {self.weight!r}: weights must be finite and > 0.")
        object.__setattr__(self, "name", self.name.strip())
        object.__setattr__(self, "definition", " ".join(self.definition.split()))
        object.__setattr__(self, "weight", float(self.weight))


MAX_VALUES = 64
MAX_VALUE_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class ValueSet:
    """A named composition of values (the paper's ``V = {v_1..v_K}``).

    Attributes:
        name: Name of the composition (e.g. ``"liberalism-4"``).
        values: The values, in order.
        description: Where the composition comes from and which members are project choices.

    Examples:
        >>> values = ValueSet.builtin("liberalism-4")
        >>> values.names
        ['Universalism', 'Self-direction', 'Hedonism', 'Stimulation']
    """

    name: str
    values: tuple[Value, ...]
    description: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = tuple(self.values)
        if not values:
            raise ValueSetError(
                f"Value set {self.name!r} is empty: list at least one value with a name and definition."
            )
        if len(values) > MAX_VALUES:
            raise ValueSetError(
                f"Value set {self.name!r} has too many values ({len(values)}; at most {MAX_VALUES}): every judgement "
                "rates all of them, so split the composition."
            )
        for value in values:
            if not isinstance(value, Value):
                raise ValueSetError(f"Value set {self.name!r} holds {value!r}, not a Value.")
        seen: dict[str, str] = {}
        for value in values:
            key = _normalise_name(value.name)
            if key in seen:
                raise ValueSetError(
                    f"Value set {self.name!r} names {value.name!r} twice (as {seen[key]!r} too): "
                    "value names must be unique."
                )
            seen[key] = value.name
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_index", {_normalise_name(v.name): i for i, v in enumerate(values)})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, default_name: str = "custom") -> ValueSet:
        """Build a value set from a mapping ``{"name", "description", "values": [{"name", "definition", "weight"}]}``.

        A plain mapping ``{value_name: definition}`` is accepted too.
        """
        if not isinstance(data, Mapping):
            raise ValueSetError(f"A value set must be a mapping with a `values` list, got {type(data).__name__}.")
        if "values" not in data:
            flat = data and not {"name", "description"} & set(data)
            if flat and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                return cls(default_name, tuple(Value(k, v) for k, v in data.items()))
            raise ValueSetError("A value set needs a `values` list: [{name: ..., definition: ...}, ...].")
        raw_values = data["values"]
        if not isinstance(raw_values, Sequence) or isinstance(raw_values, (str, bytes)):
            raise ValueSetError("`values` must be a list of {name, definition[, weight]} entries.")
        values = []
        for i, entry in enumerate(raw_values):
            if not isinstance(entry, Mapping):
                raise ValueSetError(
                    f"Entry {i} of `values` must be a mapping with `name` and `definition`, got {excerpt(entry)}."
                )
            unknown = set(entry) - {"name", "definition", "weight"}
            if unknown:
                raise ValueSetError(
                    f"Entry {i} of `values` has unknown keys {sorted(unknown)}; allowed: name, definition, weight."
                )
            if "definition" not in entry:
                raise ValueSetError(f"Value {entry.get('name', i)!r} has no definition: add a `definition` line.")
            values.append(Value(entry.get("name", ""), entry["definition"], entry.get("weight", 1.0)))
        name = data.get("name", default_name)
        if not isinstance(name, str) or not name.strip():
            raise ValueSetError("The value set's `name` must be a non-empty string.")
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            raise ValueSetError(f"The value set's `description` must be text, got {excerpt(description)}.")
        return cls(name.strip(), tuple(values), str(data.get("description", "") or "").strip())

    @classmethod
    def from_file(cls, path: str | Path) -> ValueSet:
        """Load a value set from a YAML (``.yaml``/``.yml``) or JSON file. The file is parsed as data only."""
        path = Path(path)
        text = read_text_file(path, kind="Value file", error=ValueSetError, max_bytes=MAX_VALUE_FILE_BYTES)
        data = _parse_text(text, suffix=path.suffix.lower(), origin=str(path))
        return cls.from_dict(data, default_name=path.stem)

    @classmethod
    def builtin(cls, name: str) -> ValueSet:
        """Load a built-in composition by name (see :meth:`builtin_names`)."""
        names = cls.builtin_names()
        if name not in names:
            raise ValueSetError(f"Unknown built-in value set {name!r}; choose one of: {', '.join(names)}.")
        text = resources.files(_BUILTIN_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        return cls.from_dict(_parse_text(text, suffix=".yaml", origin=name), default_name=name)

    @staticmethod
    def builtin_names() -> list[str]:
        """Names of the compositions that ship with the package."""
        files = resources.files(_BUILTIN_PACKAGE).iterdir()
        return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))

    @classmethod
    def resolve(cls, spec: ValueSet | str | Path | Mapping[str, Any]) -> ValueSet:
        """Accept a ValueSet, a built-in name, a file path or a mapping."""
        if isinstance(spec, ValueSet):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if isinstance(spec, (str, Path)):
            if isinstance(spec, str) and spec in cls.builtin_names():
                return cls.builtin(spec)
            if Path(spec).suffix.lower() in {".yaml", ".yml", ".json"} or Path(spec).exists():
                return cls.from_file(spec)
            raise ValueSetError(
                f"{str(spec)!r} is neither a built-in value set ({', '.join(cls.builtin_names())}) nor a value file."
            )
        raise ValueSetError(f"Cannot make a value set from {type(spec).__name__}; pass a ValueSet, name or path.")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    def __getitem__(self, name: str) -> Value:
        return self.values[self.index(name)]

    def index(self, name: str) -> int:
        """Position of the value called ``name`` (case, spaces and hyphens ignored)."""
        try:
            return self._index[_normalise_name(name)]
        except KeyError:
            raise ValueSetError(f"{name!r} is not a value of {self.name!r} ({', '.join(self.names)}).") from None

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.values]

    @property
    def weights(self) -> list[float]:
        """Weights rescaled to mean 1, so that uniform weights give the paper's plain sum over the K values."""
        total = sum(v.weight for v in self.values)
        return [v.weight * len(self.values) / total for v in self.values]

    def observation_text(self) -> str:
        """The textual observation ``s``: every value's name and definition (what parroting responses repeat)."""
        return "\n".join(f"{v.name}: {v.definition}" for v in self.values)

    def seed_instruction(self) -> str:
        """The paper's vanilla value instruction ``e^0``: a plain list of the value names."""
        names = self.names
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f", and {names[-1]}"
        return f"Always respond in a way that reflects the following values: {listed}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "values": [{"name": v.name, "definition": v.definition, "weight": v.weight} for v in self.values],
        }

    def subset(self, names: Iterable[str]) -> ValueSet:
        """A new set with only the named values, in this set's order."""
        keep = {self.index(n) for n in names}
        return ValueSet(
            f"{self.name}-subset", tuple(v for i, v in enumerate(self.values) if i in keep), self.description
        )


MAX_VALUE_NAME_CHARS = 80


def _check_value_name(name: str) -> None:
    """A value name must be one the judge can write back: short, one line, no ``:`` (``Name: 4`` is how ratings are
    read), no control, format or private-use characters (invisible or direction-changing text)."""
    shown = excerpt(name, 40)
    if len(name.strip()) > MAX_VALUE_NAME_CHARS:
        raise ValueSetError(
            f"Value name {shown} is {len(name.strip())} characters long; use at most {MAX_VALUE_NAME_CHARS} (put the "
            "rest in its `definition`)."
        )
    if ":" in name or "：" in name:
        raise ValueSetError(f"Value name {shown} contains ':'; judges answer `Name: score`, so names cannot hold one.")
    odd = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")})
    if odd:
        raise ValueSetError(
            f"Value name {shown} contains control or invisible characters ({', '.join(odd[:5])}); write it as plain "
            "text."
        )


def _normalise_name(name: str) -> str:
    """The name as a reader sees it: compatibility forms, look-alike letters, case, spaces, ``_`` and ``-`` folded
    (``Ｈｅｄｏｎｉｓｍ``, ``Hеdonism`` with a Cyrillic е and ``hedonism`` are one name)."""
    from picaco_dspy.objective.screening import canonicalise_response

    return re.sub(r"[\s_\-]+", "", canonicalise_response(name)).casefold()


def _unique_keys(pairs: list[tuple[str, Any]], origin: str) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueSetError(
            f"Value file {origin!r} repeats the key {excerpt(repeated[0], 40)} in one object; JSON would keep only "
            "the last one: write each key once."
        )
    return dict(pairs)


def _parse_text(text: str, *, suffix: str, origin: str) -> Any:
    if not text.strip():
        raise ValueSetError(f"Value file {origin!r} is empty: it needs a `values` list.")
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, origin))
        except json.JSONDecodeError as exc:
            raise ValueSetError(f"Value file {origin!r} is not valid JSON: {excerpt(str(exc), 160)}.") from exc
        except RecursionError as exc:
            raise ValueSetError(f"Value file {origin!r} is nested too deeply to be a value set.") from exc
    import yaml

    class _NoAliases(yaml.SafeLoader):  # anchors and aliases can expand a few bytes into gigabytes
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
            if repeated:
                raise ValueSetError(
                    f"Value file {origin!r} repeats the key {excerpt(repeated[0], 40)} in one mapping; YAML would keep "
                    "only the last one: write each key once."
                )
            return super().construct_mapping(node, deep=deep)

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ValueSetError(
                    f"Value file {origin!r} uses a YAML alias (*name); value files cannot use anchors or aliases: "
                    "write each value out."
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliases)  # a SafeLoader: data only, never constructs Python objects
    except yaml.YAMLError as exc:
        raise ValueSetError(f"Value file {origin!r} is not valid YAML: {excerpt(str(exc), 160)}.") from exc
    except RecursionError as exc:
        raise ValueSetError(f"Value file {origin!r} is nested too deeply to be a value set.") from exc
