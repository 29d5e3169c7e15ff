"""Streaming, mergeable training statistics: what the ``Preprocessor`` adapts on, without pandas.

``prepare`` computes one :class:`SplitStats` per split and per input
partition (a chunk, a file, a worker of a job array); :func:`merge` combines
partial statistics, in any order and grouping, into those of the whole data.
:meth:`purchase_intent.preprocessing.Preprocessor.adapt_from_stats` then
builds the same preprocessor that ``Preprocessor.adapt`` builds from a frame.

What is kept, and how exact the merge is:

* **value counts** (sequence events, categorical values, per-event texts)
  and **document counts** (rows holding a sequence value, for the wide bags'
  idf), as exact counters: vocabularies (top-K by count, ties by value) are
  the same as on the whole frame. ``SplitStats.prune(K)`` (``prepare
  --max-values K``) keeps the K most frequent values per counter to bound
  memory, at the price of lower-bound counts (see ``prune``).
* **numeric moments** per feature and transform (``"none"``, ``"log1p"``):
  count, mean and M2 of the finite values, merged with Chan et al.'s
  formula: means and standard deviations equal the whole-frame ones up to
  float rounding (~1e-12 relative).
* **a quantile sample** per numeric feature: a uniform reservoir of at most
  ``capacity`` raw finite values, merged by drawing from each side a
  hypergeometric share. Exact (it holds every value) while a split has at
  most ``capacity`` finite values; beyond that a quantile estimate's rank
  error has a standard deviation of at most ``0.5 / sqrt(capacity)`` (0.22 %
  of the ranks for the default 50,000).
* **TF-IDF terms**: total count and document count of every unigram and
  bigram of the joined text (scalar texts, then the most recent
  ``bow_events`` events' texts), as the bag of words tokenises it: the
  vocabulary and the idf are exact.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from purchase_intent import contract
from purchase_intent.features import transform
from purchase_intent.schema import FeatureSchema

TRANSFORMS = ("none", "log1p")
DEFAULT_CAPACITY = 50_000


@dataclasses.dataclass
class Moments:
    """Count, mean and sum of squared deviations (M2) of a stream of numbers."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, x: np.ndarray) -> "Moments":
        if len(x) == 0:
            return cls()
        mean = float(x.mean())
        return cls(len(x), mean, float(((x - mean) ** 2).sum()))

    def merge(self, other: "Moments") -> "Moments":
        """Chan, Golub and LeVeque's pairwise update."""
        n = self.count + other.count
        if n == 0:
            return Moments()
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return Moments(n, mean, m2)

    @property
    def std(self) -> float:
        """Population standard deviation (numpy's ``std`` with ``ddof=0``)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


@dataclasses.dataclass
class Reservoir:
    """A uniform sample of at most ``capacity`` of the ``seen`` values of a stream."""

    capacity: int = DEFAULT_CAPACITY
    seen: int = 0
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(cls, x: np.ndarray, capacity: int = DEFAULT_CAPACITY, seed: int = 0) -> "Reservoir":
        x = np.asarray(x, np.float64)
        seen = len(x)
        if seen > capacity:
            x = np.random.default_rng(seed).choice(x, capacity, replace=False)
        return cls(capacity, seen, x)

    def merge(self, other: "Reservoir") -> "Reservoir":
        """A uniform sample of the union: a hypergeometric share of each side's sample."""
        capacity = min(self.capacity, other.capacity)
        seen = self.seen + other.seen
        size = min(seen, capacity)
        if len(self.values) + len(other.values) <= size:
            return Reservoir(capacity, seen, np.concatenate([self.values, other.values]))
        rng = np.random.default_rng([self.seen, other.seen, len(self.values), len(other.values)])
        from_self = int(rng.hypergeometric(self.seen, other.seen, size)) if other.seen else size
        values = np.concatenate([rng.choice(self.values, from_self, replace=False),
                                 rng.choice(other.values, size - from_self, replace=False)])
        return Reservoir(capacity, seen, values)


def _merge_counters(a: dict[str, collections.Counter], b: dict[str, collections.Counter]):
    return {k: a.get(k, collections.Counter()) + b.get(k, collections.Counter())
            for k in dict.fromkeys(list(a) + list(b))}


@dataclasses.dataclass
class SplitStats:
    """Statistics of the examples of one split (or of a part of it).

    Args:
        examples: int. Rows.
        positives: int. Rows with label 1.
        values: per sequence-like and categorical column, the count of each
            value (for sequences: of each event).
        documents: per sequence column, the number of rows holding each value.
        moments: per numeric column and transform, the moments of the finite values.
        samples: per numeric column, a reservoir of raw finite values.
        bow_terms: count of each bag-of-words term over all rows.
        bow_documents: rows holding each bag-of-words term.
        bow_events: events whose texts the bag of words joined (0: no bag of words).
    """

    examples: int = 0
    positives: int = 0
    values: dict[str, collections.Counter] = dataclasses.field(default_factory=dict)
    documents: dict[str, collections.Counter] = dataclasses.field(default_factory=dict)
    moments: dict[str, dict[str, Moments]] = dataclasses.field(default_factory=dict)
    samples: dict[str, Reservoir] = dataclasses.field(default_factory=dict)
    bow_terms: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bow_documents: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bow_events: int = 0

    @classmethod
    def of_frame(cls, df: pd.DataFrame, schema: FeatureSchema, *, bow_events: int = 0,
                 capacity: int = DEFAULT_CAPACITY, seed: int = 0) -> "SplitStats":
        """Statistics of a frame validated by ``schema.validate`` (one chunk of a split).

        Args:
            bow_events: >0: also count the bag-of-words terms of the text joined
                over this many most recent events (``Preprocessor.wide_length``).
            capacity: size of the numeric quantile reservoirs.
            seed: seed of the reservoir sampling (vary it per chunk).
        """
        out = cls(examples=len(df), positives=int(df[schema.label].sum()) if schema.label in df else 0)
        events = contract.frame_model_events(df, schema.sequence_like)  # values as the graph reads them
        for name in schema.sequence_like:
            out.values[name] = collections.Counter(v for seq in events[name] for v in seq)
        for name in schema.sequences:
            out.documents[name] = collections.Counter(v for seq in events[name] for v in set(seq))
        for name in schema.categorical:
            out.values[name] = collections.Counter(contract.category(v) for v in df[name])
        for name in schema.numeric:
            x = df[name].to_numpy(np.float64)
            x = x[np.isfinite(x)]
            out.moments[name] = {t: Moments.of(transform(x, t)) for t in TRANSFORMS}
            out.samples[name] = Reservoir.of(x, capacity, seed)
        if bow_events > 0 and (schema.text or schema.event_text):
            out.bow_events = bow_events
            for terms, rows in bow_term_blocks(df, schema, bow_events):
                count_terms(terms, rows, out.bow_terms, out.bow_documents)
        return out

    def merge(self, other: "SplitStats") -> "SplitStats":
        """The statistics of both parts together."""
        if self.examples and other.examples and self.bow_events != other.bow_events:
            raise ValueError(f"Cannot merge statistics whose bag of words joined {self.bow_events} "
                             f"and {other.bow_events} events: prepare every partition alike")
        if not self.examples:
            return other
        if not other.examples:
            return self
        return SplitStats(
            examples=self.examples + other.examples,
            positives=self.positives + other.positives,
            values=_merge_counters(self.values, other.values),
            documents=_merge_counters(self.documents, other.documents),
            moments={k: {t: self.moments.get(k, {}).get(t, Moments()).merge(other.moments.get(k, {}).get(t, Moments()))
                         for t in TRANSFORMS} for k in dict.fromkeys(list(self.moments) + list(other.moments))},
            samples={k: (self.samples[k].merge(other.samples[k]) if k in self.samples and k in other.samples
                         else self.samples.get(k) or other.samples[k])
                     for k in dict.fromkeys(list(self.samples) + list(other.samples))},
            bow_terms=self.bow_terms + other.bow_terms,
            bow_documents=self.bow_documents + other.bow_documents,
            bow_events=self.bow_events or other.bow_events)

    def prune(self, max_values: int) -> "SplitStats":
        """Keeps at most ``max_values`` values per counter: the most frequent (ties by value).

        Bounds memory when a column has more distinct values than any
        vocabulary will keep (ids, bigrams). Merged pruned counts are lower
        bounds: a value's count can miss at most, per pruned part, the count
        of the part's ``max_values``-th value; vocabularies of at most
        ``max_values`` values stay exact while that margin is below the gap
        between the kept and the dropped values' counts. Document counts
        follow the values kept.
        """
        def top(counter):
            if len(counter) <= max_values:
                return counter
            ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:max_values]
            return collections.Counter(dict(ranked))

        values = {k: top(v) for k, v in self.values.items()}
        documents = {k: collections.Counter({t: c for t, c in v.items() if t in values.get(k, v)})
                     for k, v in self.documents.items()}
        terms = top(self.bow_terms)
        return dataclasses.replace(self, values=values, documents=documents, bow_terms=terms,
                                   bow_documents=collections.Counter(
                                       {t: c for t, c in self.bow_documents.items() if t in terms}))

    def compact(self, max_values: int = 20_000, capacity: int = 5_000, seed: int = 0) -> "SplitStats":
        """:meth:`prune` d to ``max_values`` per counter, each quantile reservoir a uniform sample of ``capacity``.

        Small enough to ship inside an export (``training_stats.json``, what
        ``python -m purchase_intent.monitor`` compares new data with); ``seen``
        counts stay those of the split.
        """
        out = self.prune(max_values)
        samples = {k: Reservoir(min(r.capacity, capacity), r.seen, Reservoir.of(r.values, capacity, seed).values)
                   for k, r in out.samples.items()}
        return dataclasses.replace(out, samples=samples)

    # -- (de)serialisation ---------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples, "positives": self.positives,
            "values": {k: dict(v) for k, v in self.values.items()},
            "documents": {k: dict(v) for k, v in self.documents.items()},
            "moments": {k: {t: dataclasses.asdict(m) for t, m in v.items()} for k, v in self.moments.items()},
            "samples": {k: {"capacity": r.capacity, "seen": r.seen, "values": r.values.tolist()}
                        for k, r in self.samples.items()},
            "bow_terms": dict(self.bow_terms), "bow_documents": dict(self.bow_documents),
            "bow_events": self.bow_events,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SplitStats":
        return cls(
            examples=d["examples"], positives=d["positives"],
            values={k: collections.Counter(v) for k, v in d["values"].items()},
            documents={k: collections.Counter(v) for k, v in d["documents"].items()},
            moments={k: {t: Moments(**m) for t, m in v.items()} for k, v in d["moments"].items()},
            samples={k: Reservoir(r["capacity"], r["seen"], np.asarray(r["values"], np.float64))
                     for k, r in d["samples"].items()},
            bow_terms=collections.Counter(d["bow_terms"]),
            bow_documents=collections.Counter(d["bow_documents"]),
            bow_events=d["bow_events"])


def merge(parts: Iterable[SplitStats]) -> SplitStats:
    """Merges partial statistics (any order and grouping gives the same counts and moments)."""
    out = SplitStats()
    for part in parts:
        out = out.merge(part)
    return out


def merge_splits(parts: Iterable[dict[str, SplitStats]]) -> dict[str, SplitStats]:
    """Merges ``{split: SplitStats}`` dicts of several partitions, split by split."""
    out: dict[str, SplitStats] = {}
    for part in parts:
        for split, stats in part.items():
            out[split] = out.get(split, SplitStats()).merge(stats)
    return out


def save(stats: dict[str, SplitStats], path: str | Path) -> None:
    Path(path).write_text(json.dumps({k: v.to_dict() for k, v in stats.items()}))


def load(path: str | Path) -> dict[str, SplitStats]:
    return {k: SplitStats.from_dict(v) for k, v in json.loads(Path(path).read_text()).items()}


def bow_term_blocks(df: pd.DataFrame, schema: FeatureSchema, bow_events: int,
                    block: int = 4096) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Per block of rows, the bag-of-words terms (unigrams, bigrams) of the joined texts, as the preprocessor tokenises them.

    Yields:
        ``(terms, rows)``: every term occurrence (bytes) and the block row it is in.
    """
    from purchase_intent.features import bow_terms, bow_vectorizer, joined_text, raw_batch

    vectorizer = bow_vectorizer(["[unused]"])
    for start in range(0, len(df), block):
        texts = joined_text(raw_batch(df.iloc[start:start + block], schema), schema, bow_events)
        terms = bow_terms(texts, vectorizer)  # standardise, split, n-grams: a ragged [rows, terms]
        yield terms.flat_values.numpy(), terms.value_rowids().numpy()


def count_terms(terms: np.ndarray, rows: np.ndarray, counts: collections.Counter,
                documents: collections.Counter) -> None:
    """Adds each term's occurrences to ``counts`` and the rows holding it to ``documents`` (vectorised)."""
    if len(terms) == 0:
        return
    codes, uniques = pd.factorize(terms)
    occurrences = np.bincount(codes, minlength=len(uniques))
    pairs = np.unique(rows.astype(np.int64) * len(uniques) + codes)
    rows_holding = np.bincount(pairs % len(uniques), minlength=len(uniques))
    names = [t.decode("utf-8") for t in uniques]
    counts.update(dict(zip(names, occurrences.tolist())))
    documents.update(dict(zip(names, rows_holding.tolist())))
