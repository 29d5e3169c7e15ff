"""``prepare`` fanned out by Apache Beam: ``python -m purchase_intent.prepare_beam``.

Runs the N partitions of :mod:`purchase_intent.prepare` as the elements of a
Beam pipeline (one ``prepare --partition i/N`` per element, redistributed
across the runner's workers) and then its ``merge`` once, after all of them::

    python -m purchase_intent.prepare_beam --partitions 8 --input 'gs://.../*.parquet' \\
        --schema schema.json --output /shared/prepared -- --runner=DirectRunner \\
        --direct_num_workers=2 --direct_running_mode=multi_processing

Every option before ``--`` is ``prepare``'s (``--partition`` excepted);
after it, Beam's pipeline options (``--runner=DataflowRunner``, ``FlinkRunner``,
``SparkRunner`` ...). The output directory must be shared by the workers and
the machine that launches the pipeline, which merges.

An event log with ``data.split_by=time`` over N > 1 partitions takes
``prepare``'s two rounds: the first merge computes the time cut, so the same
pipeline runs again and a second merge writes the manifest
(:func:`prepare_rounds`).

Beam is not installed with the project: apache-beam 2.77 requires
``protobuf<7`` (the project pins 7.36.2) and ``pyarrow<26``. Use a separate
environment for this step: ``pip install -r requirements-beam.txt`` then the
package with ``--no-deps`` (docs/data-at-scale.md).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

# Runs ``prepare.main(command)`` for every command, anywhere and in any order; returns when all are done.
MapPartitions = Callable[[list[list[str]]], Any]


def split_argv(argv: list[str]) -> tuple[int, list[str], list[str]]:
    """``(partitions, prepare options, Beam options)`` of the command line."""
    argv = list(argv)
    beam_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_args = argv[:cut], argv[cut + 1:]
    partitions = 1
    if "--partitions" in argv:
        i = argv.index("--partitions")
        partitions = int(argv[i + 1])
        del argv[i:i + 2]
    if "--partition" in argv:
        raise SystemExit("prepare_beam: --partitions N, not --partition (Beam runs every partition)")
    return partitions, argv, beam_args


def partition_commands(partitions: int, prepare_args: list[str]) -> list[list[str]]:
    """The ``prepare`` command line of each partition ``i/N``."""
    return [[*prepare_args, "--partition", f"{i}/{partitions}"] for i in range(partitions)]


def prepare_one(command: list[str]) -> None:
    """Prepares one partition (a Beam element): ``prepare.main(command)``."""
    from purchase_intent import prepare

    prepare.main(command)


def beam_partitions(beam_args: list[str], commands: list[list[str]]) -> None:
    """:data:`MapPartitions` on Beam: one pipeline, one element per partition, spread over the workers."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        (p
         | "partitions" >> beam.Create(commands)
         | "spread" >> beam.Reshuffle()
         | "prepare" >> beam.Map(prepare_one))


def prepare_rounds(partitions: int, prepare_args: list[str], map_partitions: MapPartitions) -> dict[str, Any] | None:
    """Runs the N partitions of ``prepare`` with ``map_partitions``, then merges once after all of them.

    The commands of a plain ``prepare`` fan-out: when the merge computes the
    time cut of an event log (``data.split_by=time``, N > 1: it returns
    ``{"time_cut": ...}`` instead of the manifest), the same partitions run
    again, now writing their shards with that cut, and a second merge writes
    the manifest.

    Returns:
        The merged manifest; None for one partition (``prepare`` merges it by
        itself, where it runs).
    """
    from purchase_intent import prepare

    commands = partition_commands(partitions, prepare_args)
    map_partitions(commands)
    if partitions == 1:
        return None
    merge = ["merge", "--output", prepare.parse_args(prepare_args).output]
    merged = prepare.main(merge)
    if "time_cut" in merged:  # round 1 recorded the sessions' first event times; round 2 writes the shards
        map_partitions(commands)
        merged = prepare.main(merge)
    return merged


def run(argv: list[str] | None = None, map_partitions: MapPartitions | None = None) -> dict[str, Any] | None:
    """``prepare_beam``'s command line; ``map_partitions`` defaults to a Beam pipeline of the options after ``--``."""
    partitions, prepare_args, beam_args = split_argv(sys.argv[1:] if argv is None else argv)
    return prepare_rounds(partitions, prepare_args, map_partitions or functools.partial(beam_partitions, beam_args))


if __name__ == "__main__":
    run()
