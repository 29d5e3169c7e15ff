"""Run report: figures and a Markdown/HTML page rebuilt from the files of a run directory.

``python -m purchase_intent.report RUN_DIR`` needs no model: it reads

* ``history.json`` -> ``learning_curves.png`` (loss and ROC-AUC, train vs validation);
* ``predictions_test.csv`` (test labels and the probabilities of every model,
  written by ``train.py``) -> ``curves.png`` (ROC, PR), ``calibration.png``
  and ``lift.png`` (cumulative gain and lift per decile, the chart a marketer reads);
* ``metrics.json`` and ``config.json`` -> the metrics table, the training
  figures, a config summary and where the export is;

and writes ``report.md`` and ``report.html`` beside them, both linking the
PNGs by relative path (the run directory can be moved or zipped).

The page leads with the decision: when it was built and when the data is
from; the buyers expected among the top 10, 20, 30 % (with a 95 %
Poisson-binomial interval); the model against the best baseline with a
paired bootstrap interval, in words; the campaign command that scores the
current customers with the run's export. Then the warnings, the drivers
(when ``python -m purchase_intent.explain`` wrote its tables into
``RUN_DIR/explain/``) and a technical appendix (metrics, glossary, training,
figures, configuration, serving). An event-log run speaks of sessions.

The package: :mod:`~purchase_intent.report.files` (the predictions file and
the run folder), :mod:`~purchase_intent.report.narrative` (names, glossary
and sentences), :mod:`~purchase_intent.report.page` (the page, the run
summary and the command line). The figures are drawn by
:mod:`purchase_intent.plots`, the targeting table computed by
:mod:`purchase_intent.targeting`; the data exploration of notebook 01 is in
:mod:`purchase_intent.data.explore`.

Examples:

    python -m purchase_intent.report runs/20261123-120000
"""

from purchase_intent.report.files import (PREDICTIONS_FILE, RUN_FILES, check_run_dir, load_predictions,
                                          save_predictions)
from purchase_intent.report.page import build_report, main, parse_args, run_summary

__all__ = ["PREDICTIONS_FILE", "RUN_FILES", "build_report", "check_run_dir", "load_predictions", "main",
           "parse_args", "run_summary", "save_predictions"]
