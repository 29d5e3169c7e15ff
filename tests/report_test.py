"""report/: the figures of a tiny run are real images, the report links them, the CLI rebuilds it."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from plots_test import assert_real_image
from purchase_intent import report, targeting
from purchase_intent.report import narrative
from targeting_test import P10, Y10

PNGS = ["learning_curves.png", "curves.png", "calibration.png", "lift.png"]
REPO = Path(__file__).resolve().parents[1]


def test_tiny_run_writes_real_figures_and_report(tiny_run):
    run_dir, metrics = tiny_run
    for name in PNGS:
        assert_real_image(run_dir / name)
    md = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    for name in PNGS:
        assert f"]({name})" in md, name
        assert f"src='{name}'" in page, name
    for model in metrics["test"]:
        assert model in md and model in page
    assert metrics["export"]["path"] in md
    assert "purchase_intent.serving.local" in md
    # the decision first: the next step scores with this run's export, the appendix comes after
    assert f"python -m purchase_intent.campaign --model {Path(metrics['export']['path']).parent} \\\n" in md
    assert md.index("## Decision: whom to contact") < md.index("## Technical appendix") < md.index("![")
    calibration = metrics["training"]["calibration"]
    assert calibration["trees"] >= 1  # the boosted trees, the default: stacked, or left out by cross-fitting
    if calibration["method"] == "stack":
        assert f"Final step: {calibration['trees']:,} boosted trees" in md
    else:
        assert calibration["method"] == "platt" and calibration["cv"]["stack"]["log_loss"] >= \
            calibration["cv"]["platt"]["log_loss"] - 1e-4
        assert f"The {calibration['trees']:,} boosted trees were left out" in md


def test_calibration_sentence_names_the_final_step():
    stack = {"training": {"calibration": {"method": "stack", "a": 0.85, "c": 0.14, "b": 0.0, "trees": 1211}}}
    text = narrative.calibration_sentence(stack)
    assert "1,211 boosted trees" in text and "network 0.85, trees 0.14" in text and "calibrates" in text
    assert "Platt" in narrative.calibration_sentence({"training": {"calibration": {"method": "platt", "a": 1, "b": 0}}})
    dropped = {"method": "platt", "a": 1, "b": 0, "trees": 40,
               "cv": {"stack": {"log_loss": 0.31}, "platt": {"log_loss": 0.30}}}
    assert "40 boosted trees were left out" in narrative.calibration_sentence({"training": {"calibration": dropped}})
    assert "not recalibrated" in narrative.calibration_sentence({"training": {"calibration": {"method": "none"}}})
    assert narrative.calibration_sentence({"training": {}}) == ""


def test_predictions_file_matches_metrics(tiny_run):
    from sklearn.metrics import roc_auc_score

    run_dir, metrics = tiny_run
    y, probs = report.load_predictions(run_dir / report.PREDICTIONS_FILE)
    assert set(probs) == set(metrics["test"])
    assert len(y) == metrics["splits"]["test"]["examples"]
    for name, p in probs.items():
        assert roc_auc_score(y, p) == pytest.approx(metrics["test"][name]["roc_auc"], abs=1e-5)


def test_report_cli_rebuilds_from_run_files(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("history.json", "metrics.json", "config.json", report.PREDICTIONS_FILE):
        shutil.copy(run_dir / name, copy / name)
    proc = subprocess.run([sys.executable, "-m", "purchase_intent.report", str(copy)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report.html" in proc.stdout
    for name in PNGS:
        assert_real_image(copy / name)
    assert all(f"]({name})" in (copy / "report.md").read_text() for name in PNGS)


def test_report_cli_fails_clearly_on_missing_directory(tmp_path):
    assert report.main([str(tmp_path / "nope")]) == 2


def test_run_summary_names_model_report_export_and_commands(tiny_run):
    run_dir, metrics = tiny_run
    text = report.run_summary(run_dir)
    export = metrics["export"]["path"]
    assert str(run_dir / "report.html") in text
    assert str(run_dir / "best.weights.h5") in text
    assert f"python -m purchase_intent.predict --model {export}" in text
    assert f"--model-base-path {Path(export).parent}" in text
    assert "PurchaseIntentClient" in text


# -- the analyst's report: targeting, threshold, label meaning, warnings, epochs, ids ------------
# Y10, P10: the 10 customers of targeting_test.py (4 buyers, probabilities in a known order).


def test_label_sentence_and_epochs_run_versus_kept():
    assert "buys within 60 days of the cut-off date" in narrative.label_sentence(
        {"label": "label", "description": "buys within 60 days of the cut-off date."})
    assert "the column `bought` is 1" in narrative.label_sentence({"label": "bought"})
    history = {"loss": [0.7, 0.6, 0.5, 0.45, 0.4, 0.38], "val_auc": [0.60, 0.65, 0.70, 0.69, 0.68, 0.67]}
    text = narrative.epochs_sentence(history, {"training": {"epochs_run": 6}}, {"train": {"epochs": 15}})
    assert text.startswith("Epochs: 6 run (at most 15); the weights of epoch 3 are kept")
    assert "early stopping" in text and "15 epochs" not in text


def test_predictions_file_ids_first_and_left_out_of_the_models(tmp_path):
    ids = pd.DataFrame({"customer_id": [f"C{i}" for i in range(10)], "cutoff": ["2011-09-01"] * 10})
    probs = {"purchase_intent": P10, "logistic_regression": 1 - P10}
    path = report.save_predictions(tmp_path / "p.csv", Y10, probs, ids=ids, threshold=0.45, model="purchase_intent")
    df = pd.read_csv(path)
    assert list(df.columns) == ["customer_id", "cutoff", "label", "purchase_intent", "logistic_regression",
                                "purchase_label"]
    assert list(df["customer_id"]) == list(ids["customer_id"])
    assert list(df["purchase_label"]) == [int(p >= 0.45) for p in P10]
    y, probs = report.load_predictions(path, ["customer_id", "cutoff"])
    assert list(probs) == ["purchase_intent", "logistic_regression"]
    np.testing.assert_array_equal(y, Y10)
    with pytest.raises(ValueError, match="clash"):
        report.save_predictions(tmp_path / "q.csv", Y10, {"purchase_intent": P10},
                                ids=pd.DataFrame({"label": range(10)}))


def _fake_run(run_dir: Path, n_test: int = 10, *, export: str | None = None, data: dict | None = None,
              schema: dict | None = None, id_column: str = "customer_id") -> Path:
    """A run directory without a model: the files the report reads, with a 10-row test split.

    ``export``: the export path metrics.json records; ``data``: config.json's ``data``
    section; ``schema``: schema.json (default: one numeric feature, ``id: [customer_id]``);
    ``id_column``: the id column of predictions_test.csv.
    """
    import json

    run_dir.mkdir()
    (run_dir / "schema.json").write_text(json.dumps(schema or
        {"label": "label", "numeric": ["x"], "id": ["customer_id"], "description": "buys within 30 days"}))
    (run_dir / "config.json").write_text(json.dumps({"train": {"epochs": 15, "learning_rate": 0.001},
                                                     **({"data": data} if data else {})}))
    (run_dir / "history.json").write_text(json.dumps(
        {"loss": [0.7, 0.6, 0.5, 0.45, 0.4, 0.38], "val_loss": [0.7, 0.65, 0.6, 0.62, 0.63, 0.64],
         "auc": [0.6, 0.7, 0.75, 0.8, 0.82, 0.85], "val_auc": [0.60, 0.65, 0.70, 0.69, 0.68, 0.67]}))
    test = {"purchase_intent": {"roc_auc": 0.80, "pr_auc": 0.7, "log_loss": 0.5, "accuracy": 0.7,
                                "precision": 0.6, "recall": 0.75, "f1": 0.67, "ece": 0.08, "threshold": 0.45},
            "logistic_regression": {"roc_auc": 0.70, "pr_auc": 0.6, "log_loss": 0.6, "accuracy": 0.6,
                                    "precision": 0.5, "recall": 0.5, "f1": 0.5, "ece": 0.1, "threshold": 0.5}}
    (run_dir / "metrics.json").write_text(json.dumps({
        "test": test, "training": {"examples": 100, "epochs_run": 6, "best_epochs": [3]},
        "splits": {"train": {"examples": 100, "positive_rate": 0.4},
                   "validation": {"examples": 10, "positive_rate": 0.4},
                   "test": {"examples": n_test, "positive_rate": 0.4}},
        **({"export": {"path": export, "max_abs_diff": 1e-7}} if export else {})}))
    report.save_predictions(run_dir / report.PREDICTIONS_FILE, Y10, {"purchase_intent": P10,
                                                                     "logistic_regression": P10[::-1]},
                            ids=pd.DataFrame({id_column: [f"C{i}" for i in range(10)]}), threshold=0.45)
    return run_dir


def test_report_reads_as_an_analyst_needs(tmp_path):
    run_dir = _fake_run(tmp_path / "run")
    report.build_report(run_dir)
    md = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    assert "Label 1 means: buys within 30 days" in md
    assert "ranks buyers better than the best baseline, logistic_regression" in md
    # the targeting table, with the hand-computed 20 % row and the threshold row
    assert "| contact the top | customers | buyers reached | share of all buyers reached |" in md
    assert "| 20% | 2 | 2 | 50% | 100% | 2.50 | 0.800 |" in md
    assert "| above threshold (50%) | 5 | 3 | 75% | 60% | 1.50 | 0.450 |" in md
    assert ("contacting everyone above it means contacting the top 50% (5 of 10 test customers) and "
            "reaches 75% of the buyers") in md
    assert "ranking quality (ROC-AUC)" in md and "calibration error (ECE)" in md and "Glossary" in md
    assert "Warning:** The test split is small (10 rows, 4 buyers" in md
    assert "class='warning'" in page and "The validation split is small" in page
    assert "Epochs: 6 run (at most 15); the weights of epoch 3 are kept" in md
    assert "the id column(s) `customer_id`" in md
    assert "<td>20%</td><td>2</td><td>2</td><td>50%</td>" in page


def test_user_csv_run_passes_ids_and_reports_label_and_small_split(user_csv_run):
    run_dir, metrics, csv, _ = user_csv_run
    source = pd.read_csv(csv)
    pred = pd.read_csv(run_dir / report.PREDICTIONS_FILE)
    assert pred.columns[0] == "customer_id" and "purchase_label" in pred.columns
    assert len(pred) == metrics["splits"]["test"]["examples"] == 180
    assert set(pred["customer_id"]) <= set(source["customer_id"])
    # the labels line up with the ids: each row's label is the source row's label
    truth = source.set_index("customer_id")["label"]
    assert (pred["label"].to_numpy() == truth.loc[pred["customer_id"]].to_numpy()).all()
    table = metrics["targeting"]["table"]
    assert [r["share_contacted"] for r in table] == [0.05, 0.1, 0.2, 0.3, 0.5]
    expected = targeting.targeting_table(pred["label"], pred["purchase_intent"])
    np.testing.assert_allclose([r["share_of_buyers_reached"] for r in table], expected["share_of_buyers_reached"])
    assert any("test split is small (180 rows" in w for w in metrics["warnings"])
    md = (run_dir / "report.md").read_text()
    assert "Label 1 means: buys during the session (column `label`)" in md
    assert "Targeting table" in md and "Warning:** The test split is small" in md


def test_report_opens_with_the_runs_warnings(tmp_path):
    """metrics.json's warnings (leakage, shift, small splits) come right after the decision, before any figure."""
    import json

    run_dir = _fake_run(tmp_path / "run", n_test=1000)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    leak = ("Leakage: 98.9% of the test rows (267 of 270) have a 'customer_id' that is also in the training "
            "split")
    metrics["warnings"] = [leak, "Base rate shift: 48.1 % of the test rows are buyers against 41.6 % in training"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    report.build_report(run_dir)
    md = (run_dir / "report.md").read_text()
    # the decision first, then the warnings that qualify it, then the appendix and its figures
    assert (md.index("## Decision: whom to contact") < md.index("Read the 2 warning(s) below")
            < md.index("## Warnings") < md.index(leak) < md.index("Base rate shift")
            < md.index("## Technical appendix") < md.index("!["))
    assert "The validation split is small" not in md  # the run's own list is shown as written
    del metrics["warnings"]  # a run of an earlier version: the small-split warnings are recomputed
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    report.build_report(run_dir)
    assert "The validation split is small" in (run_dir / "report.md").read_text()


# -- the decision block: expected buyers, the model against the best baseline, the next step, dates ----


def _build_pages(run_dir):
    """Builds the report of ``run_dir`` (200 bootstrap resamples); returns ``(report.md, report.html)`` texts."""
    report.build_report(run_dir, bootstrap=200)
    return (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()


def _heading_order(text: str, headings: list[str]) -> list[int]:
    return [text.index(h) for h in headings]


def test_decision_block_comes_before_the_technical_appendix(tmp_path):
    export = "runs/fake/export/purchase_intent/1"
    run_dir = _fake_run(tmp_path / "run", export=export)
    md, page = _build_pages(run_dir)
    # Markdown: decision, next step, warnings, appendix; every technical table under the appendix
    order = _heading_order(md, ["## Decision: whom to contact", "### What to do next", "## Warnings",
                                "## Technical appendix", "### Targeting table", "### Test metrics", "Glossary:",
                                "### Training", "### Predictions and export"])
    assert order == sorted(order)
    assert md.index("| contact the top | customers | expected buyers | 95 % interval |") < order[1]
    assert md.index("| model | ranking quality (ROC-AUC)") > order[3]
    # HTML: the decision is a box that closes before the warnings; the appendix comes after it
    order = _heading_order(page, ["<div class='decision'>", "<h2>Decision: whom to contact</h2>",
                                  "<h3>What to do next</h3>", "</div>", "<h2>Warnings</h2>",
                                  "<h2>Technical appendix</h2>", "<img "])
    assert order == sorted(order)
    # when: the build date and the data period, above the decision
    top = md[:md.index("## Decision")]
    assert "Report built 20" in top and "; run trained 20" in top
    assert "Data period: not in the run's files" in top  # customer ids only, no date column


def _planted(n: int = 400, seed: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    model = 1 / (1 + np.exp(-(3.0 * (y - 0.5) + rng.normal(0, 1, n))))  # ROC-AUC about 0.93
    return y, model, rng


def test_bootstrap_sentence_better_worse_and_not_distinguishable(tmp_path):
    from sklearn.metrics import roc_auc_score

    y, model, rng = _planted()
    noise = rng.uniform(0, 1, len(y))  # a useless baseline: ROC-AUC about 0.5
    near = np.clip(model + rng.normal(0, 1e-4, len(y)), 0, 1)  # the same ranking, give or take
    path = report.save_predictions(tmp_path / report.PREDICTIONS_FILE, y,
                                   {"purchase_intent": model, "logistic_regression": noise, "copy": near})
    y, probs = report.load_predictions(path)

    better = targeting.auc_difference(y, probs["purchase_intent"], probs["logistic_regression"], n=300)
    assert better["difference"] == pytest.approx(roc_auc_score(y, model) - roc_auc_score(y, noise))
    assert 0 < better["low"] < better["difference"] < better["high"] and better["rows"] == 400
    text = narrative.bootstrap_sentence(better, "logistic_regression")
    assert text.startswith(f"Ranking: the model is better than the best baseline (logistic_regression) by "
                           f"{better['difference']:.3f} ROC-AUC, ±{(better['high'] - better['low']) / 2:.3f} "
                           "(95 % paired bootstrap over 400 test customers")
    assert "not distinguishable" not in text

    worse = targeting.auc_difference(y, probs["logistic_regression"], probs["purchase_intent"], n=300)
    assert worse["high"] < 0
    assert "the model is worse than the best baseline (purchase_intent) by" in narrative.bootstrap_sentence(
        worse, "purchase_intent")

    same = targeting.auc_difference(y, probs["purchase_intent"], probs["copy"], n=300)
    assert same["low"] <= 0 <= same["high"] and abs(same["difference"]) < 0.005
    text = narrative.bootstrap_sentence(same, "copy", unit="session")
    assert text.startswith("Ranking: the model is not distinguishable from the best baseline, copy, on 400 "
                           f"test sessions (difference {same['difference']:+.3f} ROC-AUC, 95 % interval "
                           f"{same['low']:+.3f} to {same['high']:+.3f}")
    assert "better than" not in text and "worse than" not in text


def test_report_decision_names_the_best_baseline_and_its_interval(tmp_path):
    """build_report on a hand-made predictions file: the best baseline on test is the one compared."""
    y, model, rng = _planted()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    report.save_predictions(run_dir / report.PREDICTIONS_FILE, y,
                            {"purchase_intent": model, "logistic_regression": rng.uniform(0, 1, len(y)),
                             "hist_gradient_boosting": np.clip(model + rng.normal(0, 0.3, len(y)), 0, 1)})
    md, _ = _build_pages(run_dir)
    decision = md[md.index("## Decision"):md.index("### What to do next")]
    assert "the model is better than the best baseline (hist_gradient_boosting) by" in decision
    assert "95 % paired bootstrap over 400 test customers" in decision
    assert "logistic_regression" not in decision


def test_expected_buyers_interval_holds_the_sum_of_probabilities():
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, 2000)
    table = targeting.expected_buyers(p)
    top = np.sort(p)[::-1]
    assert list(table["share_contacted"]) == list(targeting.DECISION_SHARES)
    # the same top rows as the targeting table
    assert list(table["customers_contacted"]) == list(targeting.targeting_table(
        np.zeros(len(p)), p, targeting.DECISION_SHARES)["customers_contacted"]) == [200, 400, 600]
    for r in table.itertuples():
        assert r.expected_buyers == pytest.approx(top[:r.customers_contacted].sum())
        assert r.low <= r.expected_buyers <= r.high and r.high - r.low > 0 and r.method == "exact"
        sd = np.sqrt(np.sum(top[:r.customers_contacted] * (1 - top[:r.customers_contacted])))
        assert r.high - r.low == pytest.approx(2 * 1.96 * sd, abs=2.5)  # about +-1.96 sd
    # beyond campaign.EXACT_MAX contacts: the normal approximation, still around the sum
    big = rng.beta(2, 5, 60_000)
    r = targeting.expected_buyers(big, shares=(0.2,)).iloc[0]
    assert r["method"] == "normal" and r["customers_contacted"] == 12_000
    assert r["low"] < r["expected_buyers"] < r["high"]
    # on the page: the planted 10 customers, top 10-30 %: 1, 2, 3 rows
    header, rows = narrative.expected_buyers_rows(targeting.expected_buyers(P10),
                                                  targeting.targeting_table(Y10, P10, targeting.DECISION_SHARES))
    assert header[:4] == ["contact the top", "customers", "expected buyers", "95 % interval"]
    assert [r[0] for r in rows] == ["10%", "20%", "30%"] and [r[-1] for r in rows] == ["1", "2", "2"]


def test_next_step_is_the_campaign_command_on_the_runs_export(tmp_path):
    import shlex

    from purchase_intent import campaign

    export = "runs/20261201-101500/export/purchase_intent/1"
    run_dir = _fake_run(tmp_path / "run", export=export)
    md, page = _build_pages(run_dir)
    command = ("python -m purchase_intent.campaign --model runs/20261201-101500/export/purchase_intent \\\n"
               "    --input customers.csv --output campaign \\\n"
               "    --cost-per-contact 1 --value-per-purchase 20")
    nxt = md[md.index("### What to do next"):md.index("## Warnings")]
    assert f"```bash\n{command}\n```" in nxt
    assert f"<pre>{command}</pre>" in page
    assert "white-space:pre-wrap" in page  # a long path wraps instead of running off the page
    one_line = command.replace(" \\\n    ", " ")  # what the shell reads
    assert "\\" not in one_line and "\n" not in one_line
    args = campaign.parse_args(shlex.split(one_line)[3:])  # the campaign tool takes these flags
    assert args.model == str(Path(export).parent) and args.cost_per_contact == 1 and args.value_per_purchase == 20
    assert narrative.campaign_command(export) == command  # a version folder -> its model folder
    # no export: no command, and the page says why
    bare = _fake_run(tmp_path / "bare")
    report.build_report(bare, bootstrap=200)
    assert "purchase_intent.campaign --model" not in (bare / "report.md").read_text()
    assert "no export to score with" in (bare / "report.md").read_text()


def test_event_log_run_speaks_of_sessions_and_names_the_session_id(tmp_path):
    schema = {"label": "purchase", "sequences": ["item_id", "event_type"], "categorical": ["device"],
              "numeric": ["previous_orders", "prefix_events", "prefix_seconds"], "id": ["session_id"]}
    run_dir = _fake_run(tmp_path / "run", export="runs/ev/export/purchase_intent/1", schema=schema,
                        data={"name": "events.csv", "format": "events", "session_column": "session_id"},
                        id_column="session_id")
    md, page = _build_pages(run_dir)
    assert "customer" not in md.lower() and "customer" not in page.lower()
    assert "This run is on an event log: each row is a session" in md
    assert "The model gives each session the probability of label 1" in md
    assert "on the 10 test sessions (held out from training)" in md
    assert "| contact the top | sessions | expected buyers |" in md
    assert "paired bootstrap over 10 test sessions" in md  # the bootstrap sentence
    assert "--input sessions.csv --output campaign" in md
    assert "`predictions_test.csv`: one row per test session: the session id `session_id`, `label`" in md
    assert list(pd.read_csv(run_dir / report.PREDICTIONS_FILE).columns[:2]) == ["session_id", "label"]
    # the schema alone tells an event log (derived prefix features), config or not
    assert narrative.unit_of(None, schema) == "session" and narrative.unit_of({}, {"numeric": ["x"]}) == "customer"
    assert narrative.unit_of({"data": {"name": "synthetic_clickstream"}}, None) == "session"
    # an event log whose schema names no id: the page says how to get the session id
    text = report.page.predictions_sentence([], "session", {"data": {"session_column": "sid"}})
    assert "no session id (list the log's session column under `id` in the schema file, e.g. `id: [sid]`" in text


def test_period_sentence_from_the_cutoff_date_and_online_retail_horizon(tmp_path):
    ids = pd.DataFrame({"customer_id": ["12346", "12347"], "cutoff": ["2011-10-10", "2011-10-10"]})
    span = report.files.date_span(ids)
    assert span == ("cutoff", "2011-10-10", "2011-10-10")  # customer ids are not dates
    text = narrative.period_sentence(span, {"data": {"name": "online_retail", "horizon_days": 60}})
    assert text == ("Data period: test customers as at the cut-off 2011-10-10 (column `cutoff`), their purchases "
                    "counted over the next 60 days, to 2011-12-09.")
    other = narrative.period_sentence(("day", "2024-03-01", "2024-03-28"), {"data": {"name": "my.csv"}})
    assert other == "Data period: test rows dated 2024-03-01 to 2024-03-28 (column `day`)."
    assert report.files.date_span(pd.DataFrame({"customer_id": ["C1", "C2"]})) is None


def test_drivers_section_only_from_explains_files(tmp_path):
    run_dir = _fake_run(tmp_path / "run", export="runs/x/export/purchase_intent/1")
    md, _ = _build_pages(run_dir)
    assert "## Drivers" not in md
    assert "python -m purchase_intent.explain --model runs/x/export/purchase_intent/1" in md  # how to get them
    explain_dir = run_dir / "explain"
    explain_dir.mkdir()
    pd.DataFrame({"feature": ["recency_days", "frequency"], "importance": [0.0031, 0.0123],
                  "std": [0.001, 0.002], "baseline_roc_auc": [0.72, 0.72]}).to_csv(explain_dir / "importance.csv",
                                                                                    index=False)
    pd.DataFrame({"row": range(5), "probability": np.linspace(0.1, 0.5, 5)}).to_csv(explain_dir / "occlusion.csv",
                                                                                   index=False)
    md, _ = _build_pages(run_dir)
    assert md.index("## Warnings") < md.index("## Drivers") < md.index("## Technical appendix")
    drivers = md[md.index("## Drivers"):md.index("## Technical appendix")]
    assert "on 5 labelled rows" in drivers
    assert drivers.index("| frequency | 0.0123 | 0.0020 |") < drivers.index("| recency_days | 0.0031 | 0.0010 |")
