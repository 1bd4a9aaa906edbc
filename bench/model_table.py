"""The README's models table: every bundled model (tagged "pretrained"), quality against speed.

    python bench/model_table.py                  # print it; bundled models without figures on this machine are evaluated first
    python bench/model_table.py --write-readme   # and rewrite README.md between <!-- models-table --> and <!-- /models-table -->
    python bench/model_table.py --no-eval        # only the figures already recorded

The registry is the usual one (GENHUB_HOME / GENHUB_DB, or --home / --db). Figures are recorded by
`genhub eval` (hub/eval/evaluate.py); re-running this script re-uses them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from hub.core import Hub
from hub.devices import hardware_description
from hub.eval.commands import bundled_refs
from hub.eval.evaluate import EvalOptions
from hub.eval.table import models_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- models-table -->", "<!-- /models-table -->"


def needs_eval(hub: Hub, ref: str) -> bool:
    """No quality figure, or no batch-1 latency measured on this machine."""
    metrics = hub.registry.metrics(ref)
    here = hardware_description()
    has_quality = any(m.name in ("fd", "modes_covered") for m in metrics)
    has_speed = any(m.name == "latency_p50_ms_batch1" and m.hardware == here for m in metrics)
    return not (has_quality and has_speed)


# Besides each model's default sampling, measure these settings too (speed only: quality at 1000 steps would take
# the better part of an hour here). The README compares the one-pass and few-step models with DDPM at 1000 and 50.
EXTRA_SPEED = {"ddpm": [("ddpm", 1000)]}


def needs_speed(hub: Hub, ref: str, sampler: str, steps: int) -> bool:
    here = hardware_description()
    return not any(m.name == "latency_p50_ms_batch1" and m.hardware == here and m.sampler == sampler and m.steps == steps
                   for m in hub.registry.metrics(ref))


def replace_section(text: str, table: str) -> str:
    """The README with the text between the markers replaced; an end marker is added after a lone start marker."""
    block = f"{START}\n\n{table}\n\n{END}"
    if START not in text:
        raise SystemExit(f"README has no {START} marker; add one where the table belongs")
    if END in text:
        return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, count=1, flags=re.S)
    return text.replace(START, block, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="genhub home (default: GENHUB_HOME or the per-user data folder)")
    parser.add_argument("--db", help="registry SQLAlchemy URL")
    parser.add_argument("--no-eval", action="store_true", help="do not evaluate models that lack figures")
    parser.add_argument("--write-readme", action="store_true", help=f"rewrite {README.name} between the markers")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the figures are recorded with this machine's description, threads included
    with Hub.open(db_url=args.db, home=args.home) as hub:
        refs = bundled_refs(hub)
        for ref in refs:
            if not args.no_eval and needs_eval(hub, ref):
                print(f"evaluating {ref} ...", file=sys.stderr, flush=True)
                hub.evaluate(ref, EvalOptions())
            for sampler, steps in EXTRA_SPEED.get(hub.resolve(ref).family, []):
                if not args.no_eval and needs_speed(hub, ref, sampler, steps):
                    print(f"timing {ref} with {sampler} at {steps} steps ...", file=sys.stderr, flush=True)
                    hub.evaluate(ref, EvalOptions(sampler=sampler, steps=steps, quality=False, floor=False))
        table = models_table(hub, refs)
    print(table)
    if args.write_readme:
        args.readme.write_text(replace_section(args.readme.read_text(), table))
        print(f"wrote the table into {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
