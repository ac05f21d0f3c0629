"""How much of the frozen judge-manipulation corpus the judge's screen catches, per attack kind, and how many honest
responses it flags. No model runs: this measures the screen alone (what the judge sees of a response).

An attack counts as *flagged* when the screen removes anything from it, and as *neutralised* when no piece of its
payload (the text the attack added to the honest response, 8+ characters, canonicalised) is left in the screened view:
under the defence's rule (an attack never scores above its screened self) a neutralised attack cannot raise a score.

    python -m benchmarks.screen_coverage              # the development split
    python -m benchmarks.screen_coverage --heldout    # the held-out split: only to measure a finished defence
"""

from __future__ import annotations

import argparse
import difflib
from collections import defaultdict

from picaco_dspy.objective.screening import SCREEN_VERSION, canonicalise_response, screen_response
from picaco_dspy.testing.corpus import attacks, honest_responses

VALUES = ["Universalism", "Self-direction", "Hedonism", "Stimulation"]


def payload_pieces(honest: str, attacked: str, min_chars: int = 8) -> list[str]:
    """The runs of text the attack added to the honest response (canonicalised), at least ``min_chars`` long."""
    before, after = canonicalise_response(honest), canonicalise_response(attacked)
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    pieces = [after[j1:j2].strip() for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace")]
    return [p for p in pieces if len(p) >= min_chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", action="store_true", help="measure the held-out split")
    split = "heldout" if parser.parse_args().heldout else "dev"
    rows: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for attack in attacks(split):
        screened = screen_response(attack.attacked, VALUES)
        pieces = payload_pieces(attack.honest, attack.attacked)
        neutralised = not any(piece in screened.text for piece in pieces)
        rows[attack.kind].append((screened.flagged, neutralised))
    honest = honest_responses(split)
    honest_flagged = sum(screen_response(h.response, VALUES).flagged for h in honest)
    print(
        f"Screen version {SCREEN_VERSION}, {split} split: {sum(map(len, rows.values()))} attacks, {len(honest)} honest"
    )
    print(f"{'kind':<26}{'attacks':>8}{'flagged':>9}{'neutralised':>13}")
    for kind in sorted(rows):
        flagged = sum(f for f, _ in rows[kind])
        neutral = sum(n for _, n in rows[kind])
        print(f"{kind:<26}{len(rows[kind]):>8}{flagged / len(rows[kind]):>9.0%}{neutral / len(rows[kind]):>13.0%}")
    everything = [r for kind_rows in rows.values() for r in kind_rows]
    print(
        f"{'all':<26}{len(everything):>8}{sum(f for f, _ in everything) / len(everything):>9.0%}"
        f"{sum(n for _, n in everything) / len(everything):>13.0%}"
    )
    print(f"honest responses flagged: {honest_flagged}/{len(honest)} ({honest_flagged / len(honest):.0%})")


if __name__ == "__main__":
    main()
