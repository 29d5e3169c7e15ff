"""``python -m purchase_intent.explain`` (:func:`main`) and its work, :func:`explain_export`, which a
training run also calls after the export (:func:`explain_run`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd

from purchase_intent.explain.importance import default_features, describe_shuffles, occlusion, permutation_importance
from purchase_intent.explain.scorer import PerturbationScorer

logger = logging.getLogger(__name__)


# -- command line ----------------------------------------------------------------
def parse_args(argv: list[str] | None = None):
    import argparse

    from purchase_intent import cli

    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.explain",
        description="Explain an exported model on a CSV/Parquet table of raw examples: the contribution "
                    "of each modality to each example (occlusion) and, when the table has the label, "
                    "the drop in ROC-AUC when a feature is shuffled (permutation importance).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model", required=True,
                   help="exported version folder, e.g. runs/<run>/export/purchase_intent/1 "
                        "(a model folder picks its highest version)")
    p.add_argument("--input", required=True, help="CSV/Parquet of raw examples named as in the schema")
    p.add_argument("--output-dir", default=None,
                   help="where occlusion.csv, occlusion_summary.csv and importance.csv go "
                        "(default: <input>.explain/ beside the input)")
    p.add_argument("--max-rows", type=int, default=2000, help="explain a seeded sample of this many rows")
    p.add_argument("--repeats", type=int, default=3, help="shuffles per feature (permutation importance)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per call of the model")
    p.add_argument("--unbatched", action="store_true",
                   help="score each perturbed frame by its own call of the export (slower; the reference "
                        "the default batched scoring is tested against)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (default: a bar per stage at a terminal, else one line per stage)")
    cli.add_common_flags(p)
    return p.parse_args(argv)


TIMINGS_FILE = "timings.json"  # written beside the tables: seconds per stage, rows scored


def sample_rows(df: pd.DataFrame, max_rows: int | None, seed: int = 0) -> pd.DataFrame:
    """``df``, or a seeded sample of ``max_rows`` of its rows in their order when it has more."""
    if max_rows is None or len(df) <= max_rows:
        return df
    return df.sample(max_rows, random_state=seed).sort_index()


def explain_export(model, df: pd.DataFrame, out_dir: str | Path, *, repeats: int = 3,
                   progress: bool | None = None, max_rows: int | None = None, seed: int = 0,
                   batch_size: int = 512, batched: bool = True, timings: dict | None = None) -> dict:
    """Explains an export on a validated frame; writes the tables the report's drivers read.

    Writes into ``out_dir``: ``occlusion.csv`` (one row per example),
    ``occlusion_summary.csv`` (one row per modality), ``importance.csv``
    (permutation importance of every feature, text included: only when ``df``
    has the label with both classes) and :data:`TIMINGS_FILE`. The command
    (:func:`main`) and a training run (:func:`explain_run`) both come here.

    Args:
        model: an exported version folder (or model folder: its highest
            version) or a loaded ``purchase_intent.predict.Predictor``.
        df: frame validated by the export's schema (the label column optional).
        out_dir: folder of the tables (made if missing).
        repeats: shuffles per feature (permutation importance).
        progress: progress on stderr (None: a bar per stage at a terminal, else
            one line per stage; False: none).
        max_rows: explain a seeded sample of this many rows when ``df`` has more.
        seed: seed of that sample and of the shuffles.
        batch_size: rows per call of the model.
        batched: score every perturbed frame of a stage together
            (:class:`PerturbationScorer`); False: one call per frame.
        timings: seconds of earlier stages (e.g. ``load_seconds``) to record too.

    Returns:
        ``{"out_dir", "rows", "version_dir", "summary"`` (occlusion summary),
        ``"importance"`` (the table, or None when skipped), ``"features"``,
        ``"timings"``, ``"scorer"`` (the :class:`PerturbationScorer` or None)``}``.
    """
    import json
    import time

    from purchase_intent.predict import Predictor

    timings = dict(timings or {})
    if not isinstance(model, Predictor):
        clock = time.perf_counter()
        model = Predictor(model)
        timings["load_seconds"] = time.perf_counter() - clock
    predictor, schema = model, model.schema
    df = sample_rows(df, max_rows, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if progress is None:
        print(f"Explaining {len(df):,} rows with {predictor.version_dir}", file=sys.stderr, flush=True)

    clock = time.perf_counter()  # the serving arrays of the frame are built in the occlusion stage
    scorer = PerturbationScorer(predictor, df, schema, batch_size=batch_size, progress=progress) if batched else None
    scoring = scorer or predictor
    per_example, summary = occlusion(scoring, df, schema, batched=batched, progress=progress)
    timings["occlusion_seconds"] = time.perf_counter() - clock
    per_example.to_csv(out_dir / "occlusion.csv", index_label="row")
    summary.to_csv(out_dir / "occlusion_summary.csv")
    table, features = None, default_features(schema)
    if schema.label in df.columns and df[schema.label].nunique() == 2:
        clock = time.perf_counter()
        table = permutation_importance(scoring, df, schema, features, n_repeats=repeats, seed=seed,
                                       batched=batched, progress=progress)
        timings["importance_seconds"] = time.perf_counter() - clock
        table.to_csv(out_dir / "importance.csv")
    (out_dir / TIMINGS_FILE).write_text(json.dumps({
        "rows": len(df), **{k: round(v, 3) for k, v in timings.items()},
        "batched": scorer is not None,
        "rows_requested": scorer.rows_requested if scorer else None,
        "rows_scored": scorer.rows_scored if scorer else None,
        "serving_arrays": scorer.exact_arrays if scorer else False,
        "text_embeddings_fed": scorer.text_embeddings if scorer else False}, indent=2))
    return {"out_dir": out_dir, "rows": len(df), "version_dir": predictor.version_dir, "summary": summary,
            "importance": table, "features": features, "timings": timings, "scorer": scorer}


def explain_run(cfg, version_dir: str | Path | None, frame: pd.DataFrame, run_dir: str | Path) -> dict | None:
    """A training run's drivers: :func:`explain_export` on ``train.explain_rows`` test rows, into ``RUN_DIR/explain/``.

    Runs when ``cfg.train.explain_rows`` > 0, the run exported (``version_dir``),
    this process is the chief and ``frame`` (the run's test frame) has both
    classes; a seeded sample (``train.seed``) when it has more rows. One stage
    line says what was explained. This step is optional: any failure is a
    warning, never the run's; the tables appear only when every one was written
    (``RUN_DIR/explain/`` is replaced then, left as it was otherwise).

    Returns:
        What :func:`explain_export` returned, or None (off, skipped or failed).
    """
    import shutil
    import time

    from purchase_intent import cli
    from purchase_intent.distribute import is_chief

    rows = cfg.train.explain_rows
    if rows <= 0 or not version_dir or not is_chief():
        return None
    run_dir = Path(run_dir)
    final, partial = run_dir / "explain", run_dir / "explain.partial"  # the report reads RUN_DIR/explain/
    clock = time.perf_counter()
    try:
        from purchase_intent.predict import Predictor

        predictor = Predictor(version_dir)
        label = predictor.schema.label
        if frame[label].nunique() < 2:
            logger.info("Drivers: skipped (the test split has one class only)", extra=cli.STAGE)
            return None
        shutil.rmtree(partial, ignore_errors=True)
        out = explain_export(predictor, frame, partial, progress=False, max_rows=rows, seed=cfg.train.seed)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    except Exception as err:  # optional: the run has its model, export and report without it
        shutil.rmtree(partial, ignore_errors=True)
        logger.warning("Drivers not computed (%s: %s); the report gives the explain command instead",
                       type(err).__name__, err)
        return None
    out["out_dir"] = final
    seconds = time.perf_counter() - clock
    if out["importance"] is not None:
        logger.info("Drivers: permutation importance of %d features (text included) on %s test rows (%.0f s): "
                    "%s", len(out["features"]), f"{out['rows']:,}", seconds, final, extra=cli.STAGE)
    else:
        logger.info("Drivers: occlusion of each kind of input on %s test rows (%.0f s; no permutation importance: "
                    "one class in the sample): %s", f"{out['rows']:,}", seconds, final, extra=cli.STAGE)
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the explanation command; writes its tables and prints the summaries.

    Progress goes to stderr (a tqdm bar per stage at a terminal, otherwise one
    line per stage); the tables and summaries to stdout. The work is
    :func:`explain_export`'s (every perturbed frame of a stage scored together
    through the export's serving arrays, each distinct row once).
    """
    import time

    from purchase_intent import cli
    from purchase_intent.data.readers import check_table_file, read_table

    args = parse_args(argv)
    cli.setup_logging()
    check_table_file(args.input)  # before the model (and TensorFlow) loads
    from purchase_intent.predict import Predictor

    clock = time.perf_counter()
    predictor = Predictor(args.model)
    schema = predictor.schema
    timings = {"load_seconds": time.perf_counter() - clock}
    clock = time.perf_counter()
    raw = sample_rows(read_table(args.input, schema), args.max_rows)  # validated after sampling: faster
    df = schema.validate(raw, require_label=schema.label in raw.columns, where=str(args.input))
    timings["read_seconds"] = time.perf_counter() - clock
    out_dir = Path(args.output_dir or Path(args.input).with_name(Path(args.input).name + ".explain"))
    out = explain_export(predictor, df, out_dir, repeats=args.repeats, progress=False if args.no_progress else None,
                         batch_size=args.batch_size, batched=not args.unbatched, timings=timings)
    print(f"Contribution of each modality (probability with all inputs - without it):\n{out['summary']}\n")
    if out["importance"] is not None:
        print(f"Drop in ROC-AUC when a feature is shuffled ({args.repeats} shuffle(s) each):\n{out['importance']}\n"
              f"{describe_shuffles(schema, out['features'])}\n")
    else:
        print(f"Permutation importance skipped: no label column {schema.label!r} with both classes "
              f"in {args.input}", flush=True)
    scorer = out["scorer"]
    stages = ", ".join(f"{k.replace('_seconds', '').replace('_', ' ')} {v:.1f} s" for k, v in out["timings"].items())
    scored = (f"; {scorer.rows_scored:,} distinct rows scored of {scorer.rows_requested:,} perturbed"
              if scorer else "")
    print(f"Wrote {out_dir} ({stages}{scored})", flush=True)
    return 0
