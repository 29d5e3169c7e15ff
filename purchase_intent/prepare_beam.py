"""``prepare`` fanned out by Apache Beam: ``python -m purchase_intent.prepare_beam``.

Runs the N partitions of :mod:`purchase_intent.prepare` as the elements of a
Beam pipeline (one ``prepare_partition`` per element, redistributed across
the runner's workers) and then its ``merge`` once, after all of them::

    python -m purchase_intent.prepare_beam --partitions 8 --input 'gs://.../*.parquet' \\
        --schema schema.json --output /shared/prepared -- --runner=DirectRunner \\
        --direct_num_workers=2 --direct_running_mode=multi_processing

Every option before ``--`` is ``prepare``'s (``--partition`` excepted);
after it, Beam's pipeline options (``--runner=DataflowRunner``, ``FlinkRunner``,
``SparkRunner`` ...). The output directory must be shared by the workers.

Beam is not installed with the project: apache-beam 2.77 requires
``protobuf<7`` (the project pins 7.36.2) and ``pyarrow<26``. Use a separate
environment for this step: ``pip install -r requirements-beam.txt`` then the
package with ``--no-deps`` (README "Your data at scale").
"""

from __future__ import annotations

import sys


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


def prepare_one(index: int, partitions: int, prepare_args: list[str]) -> str:
    """Prepares partition ``index`` (a Beam element); returns the output directory."""
    from purchase_intent import prepare

    prepare.main(prepare_args + ["--partition", f"{index}/{partitions}"])
    return prepare.parse_args(prepare_args).output


def merge_once(outputs: list[str]) -> dict:
    from purchase_intent import prepare

    return prepare.merge(sorted(set(outputs))[0])


def run(argv: list[str] | None = None) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    partitions, prepare_args, beam_args = split_argv(sys.argv[1:] if argv is None else argv)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        (p
         | "partitions" >> beam.Create(list(range(partitions)))
         | "spread" >> beam.Reshuffle()
         | "prepare" >> beam.Map(prepare_one, partitions, prepare_args)
         | "all done" >> beam.combiners.ToList()
         # One partition merges by itself (prepare.main); N > 1 are merged once, after all of them.
         | "merge" >> beam.Map(merge_once if partitions > 1 else (lambda outputs: None)))


if __name__ == "__main__":
    run()
