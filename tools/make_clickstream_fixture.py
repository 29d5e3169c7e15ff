"""Writes the small clickstream test fixture from the synthetic generator.

Writes ``tests/data/clickstream_sample.csv.gz``: the event log of
:func:`purchase_intent.data.synthetic.make_synthetic_clickstream` with 1000
sessions (seed 7), rows ordered by time as a shop export is (sessions
interleave), in the layout of ``purchase_intent/data/schemas/synthetic_clickstream.yaml``.
The gzip header carries no timestamp, so the same code writes the same bytes.

Usage::

    python tools/make_clickstream_fixture.py [--out PATH] [--sessions N] [--seed S]
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

from purchase_intent.data.synthetic import make_synthetic_clickstream

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "clickstream_sample.csv.gz"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    log = make_synthetic_clickstream(args.sessions, seed=args.seed)
    text = io.StringIO()
    log.to_csv(text, index=False)
    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.getvalue().encode("utf-8"))
    print(f"{args.out}: {len(log)} events of {log['session_id'].nunique()} sessions, "
          f"{Path(args.out).stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
