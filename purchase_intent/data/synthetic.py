"""Synthetic sessions with every modality and planted signal, for tests and demos.

The purchase log-odds is a sum of one term per modality (query words, cart
events in the sequence, words of the viewed items' titles, numeric and
categorical features) plus noise, so each branch of the model has something
to learn and a model that learns nothing stays at ROC-AUC 0.5.

:func:`make_synthetic_clickstream` makes a raw event log instead (one row per
event), for the in-session prefix task of ``purchase_intent.data.clickstream``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema

SCHEMA = FeatureSchema(
    label="label",
    text=["query"],
    event_text=["item_title"],
    sequences=["item_id", "event_type"],
    numeric=["session_minutes", "pages_viewed", "price_seen"],
    categorical=["device", "country"],
)

_BUY_WORDS = ["buy", "cheap", "discount", "order", "deal", "size"]
_BROWSE_WORDS = ["ideas", "review", "compare", "inspiration", "history", "photos"]
_NEUTRAL = ["red", "blue", "cotton", "dress", "shoes", "lamp", "gift", "mug", "bag", "summer",
            "winter", "kids", "garden", "kitchen", "vintage", "set", "large", "small"]
_HOT_ADJ = ["bestseller", "sale", "new"]
_COLD_ADJ = ["clearance", "returned", "old"]


def make_synthetic(n: int = 2_000, seed: int = 0, max_events: int = 30) -> pd.DataFrame:
    """Generates ``n`` sessions following :data:`SCHEMA`.

    Args:
        n: int. Number of examples.
        seed: int. Random seed; the same seed gives the same frame.
        max_events: int. Longest behaviour sequence (some sessions have none).

    Returns:
        A DataFrame with one row per session and a 0/1 ``label`` column.
    """
    rng = np.random.default_rng(seed)
    n_items = 120
    item_hot = rng.normal(0, 1, n_items)  # latent appeal of each item
    item_words = [
        " ".join(rng.choice(_NEUTRAL, 2, replace=False))
        + " " + (rng.choice(_HOT_ADJ) if item_hot[i] > 0 else rng.choice(_COLD_ADJ))
        for i in range(n_items)
    ]
    rows = []
    for _ in range(n):
        intent = rng.normal()
        # Scalar text: the query leans on buy-words when intent is high.
        p_buy_word = 1 / (1 + np.exp(-2 * intent))
        q_len = rng.integers(2, 6)
        words = [rng.choice(_BUY_WORDS) if rng.random() < p_buy_word else rng.choice(_BROWSE_WORDS)
                 for _ in range(q_len // 2)] + list(rng.choice(_NEUTRAL, q_len - q_len // 2))
        rng.shuffle(words)
        # Behaviour sequence: length may be zero; cart events are more common with intent.
        length = int(rng.choice([0, rng.integers(1, max_events + 1)], p=[0.08, 0.92]))
        items = rng.integers(0, n_items, length)
        p_cart = 0.1 + 0.3 / (1 + np.exp(-intent))
        events = rng.choice(["view", "cart", "wishlist"], length, p=[1 - p_cart - 0.05, p_cart, 0.05])
        seq_term = (0.8 * np.mean(events == "cart") * 4 - 0.6) if length else -0.5
        item_term = 0.6 * float(np.mean(item_hot[items])) if length else 0.0
        minutes = float(rng.lognormal(1.5 + 0.3 * intent, 0.6))
        pages = float(rng.poisson(3 + 2 * max(intent, -1)))
        price = float(rng.lognormal(3, 1))
        device = rng.choice(["mobile", "desktop", "tablet"], p=[0.5, 0.4, 0.1])
        country = rng.choice(["UK", "DE", "FR", "NL", "ES"])
        logit = (1.2 * intent + seq_term + item_term + 0.3 * np.log(minutes)
                 + (0.5 if device == "desktop" else -0.2) + (0.4 if country == "UK" else 0.0)
                 - 0.2 * np.log1p(price) + rng.normal(0, 0.5))
        rows.append({
            "query": " ".join(words),
            "item_title": [item_words[i] for i in items],
            "item_id": [f"sku{i}" for i in items],
            "event_type": list(events),
            "session_minutes": minutes,
            "pages_viewed": pages,
            "price_seen": price,
            "device": device,
            "country": country,
            "logit": logit,
        })
    df = pd.DataFrame(rows)
    # Centre the logit so roughly a third of sessions buy.
    threshold = np.quantile(df["logit"], 0.67)
    df["label"] = (df["logit"] > threshold).astype(int)
    return df.drop(columns="logit")


# -- a raw clickstream: one row per event ------------------------------------
CLICKSTREAM_SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "synthetic_clickstream.yaml"
CLICKSTREAM_SCHEMA = FeatureSchema.load(CLICKSTREAM_SCHEMA_FILE)
# Column names of the generated log: DataConfig's defaults, plus a price column.
CLICKSTREAM_COLUMNS = {"session_column": "session_id", "time_column": "timestamp",
                       "event_type_column": "event_type", "purchase_value": "purchase",
                       "price_column": "price"}

_CATEGORIES = ["dress", "shoes", "bag", "lamp", "mug", "toy", "planter", "pan"]
_CATEGORY_PRICE = np.array([45.0, 60.0, 35.0, 30.0, 9.0, 15.0, 12.0, 25.0])
_COLOURS = ["red", "blue", "black", "white", "green", "grey"]
_HOUR_WEIGHTS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.6, 2.8, 3.0,
                          3.4, 3.2, 2.9, 2.8, 2.9, 3.2, 3.8, 4.4, 4.6, 4.0, 2.8, 1.8])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def make_synthetic_clickstream(n_sessions: int = 2_000, seed: int = 0, buy_rate: float = 0.07,
                               days: int = 28, start: str = "2024-03-04") -> pd.DataFrame:
    """Generates a raw clickstream (one row per event) with planted purchase signal.

    Each session has a latent intent. Sessions with more intent browse longer,
    keep to one product category, add to cart more often and dwell longer on
    each page; items have a latent appeal, and sessions that look at appealing
    items (their titles say "bestseller", "new", "sale") buy more. Whether a
    session buys is drawn from the sum of these terms (about ``buy_rate`` of
    sessions buy); a buying session ends with a ``purchase`` event of its
    last carted (or last viewed) item, sometimes followed by a few views
    after the purchase, as real logs have.

    Args:
        n_sessions: int. Number of sessions.
        seed: int. Random seed; the same seed gives the same log.
        buy_rate: float. Expected fraction of sessions that buy.
        days: int. Sessions start uniformly over this many days, with a
            daily traffic curve (evening peak).
        start: str. First day.

    Returns:
        One row per event, ordered by time (sessions interleave), with columns
        ``session_id``, ``timestamp`` (datetime64, whole seconds),
        ``event_type`` (view, cart, wishlist, purchase), ``item_id``,
        ``title``, ``price`` (about 1 % missing), and the session-level
        ``device``, ``traffic_source`` and ``previous_orders``: the layout of
        :data:`CLICKSTREAM_SCHEMA` and :data:`CLICKSTREAM_COLUMNS`.
    """
    from purchase_intent.data.readers import group_boundaries

    rng = np.random.default_rng(seed)
    # Catalogue: items of each category, a latent appeal, a price and a title.
    per_cat = 30
    item_cat = np.repeat(np.arange(len(_CATEGORIES)), per_cat)
    n_items = len(item_cat)
    appeal = rng.normal(0, 1, n_items)
    item_price = np.round(rng.lognormal(np.log(_CATEGORY_PRICE[item_cat]), 0.35), 2)
    adjectives = np.where(appeal > 0.5, rng.choice(_HOT_ADJ, n_items),
                          np.where(appeal < -0.5, rng.choice(_COLD_ADJ, n_items), ""))
    titles = np.array([" ".join(w for w in (a, rng.choice(_COLOURS), _CATEGORIES[c]) if w)
                       for a, c in zip(adjectives, item_cat)], dtype=object)
    item_ids = np.array([f"sku{i:04d}" for i in rng.permutation(n_items)], dtype=object)

    # Sessions.
    n = n_sessions
    intent = rng.normal(0, 1, n)
    device = rng.choice(["mobile", "desktop", "tablet"], n, p=[0.55, 0.35, 0.10])
    source = rng.choice(["search", "direct", "social", "email"], n, p=[0.4, 0.3, 0.2, 0.1])
    previous_orders = rng.poisson(np.exp(-0.8 + 0.4 * intent))
    n_browse = 1 + rng.poisson(np.exp(1.3 + 0.35 * intent))
    focus = rng.integers(0, len(_CATEGORIES), n)

    # Browsing events, grouped by session.
    sess = np.repeat(np.arange(n), n_browse)
    bounds = group_boundaries(sess)
    pos = np.arange(len(sess)) - np.repeat(bounds[:-1], n_browse)
    in_focus = rng.random(len(sess)) < _sigmoid(1.8 * intent)[sess]
    cat = np.where(in_focus, focus[sess], rng.integers(0, len(_CATEGORIES), len(sess)))
    item = cat * per_cat + rng.integers(0, per_cat, len(sess))
    p_cart = 0.02 + 0.25 * _sigmoid(2.0 * intent - 1.0)[sess]
    r = rng.random(len(sess))
    etype = np.where(r < p_cart, "cart", np.where(r < p_cart + 0.03, "wishlist", "view")).astype(object)
    etype[pos == 0] = "view"
    is_cart = etype == "cart"

    # Who buys: intent, the appeal of the items seen, a cart, device and channel.
    mean_appeal = np.add.reduceat(appeal[item], bounds[:-1]) / n_browse
    has_cart = np.maximum.reduceat(is_cart, bounds[:-1])
    logit = (1.2 * intent + 1.5 * mean_appeal + 2.0 * has_cart + 0.5 * (device == "desktop")
             - 0.3 * (device == "mobile") + 0.5 * (source == "email"))
    lo, hi = -20.0, 20.0
    for _ in range(60):  # the offset that gives the expected buy rate
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + logit).mean() < buy_rate else (lo, mid)
    buys = rng.random(n) < _sigmoid(lo + logit)

    # A buyer's purchase (its last carted item, else its last item), then 0-2 views.
    last_cart = np.maximum.accumulate(np.where(is_cart, np.arange(len(sess)), -1))[bounds[1:] - 1]
    bought = np.where(last_cart >= bounds[:-1], item[np.maximum(last_cart, 0)], item[bounds[1:] - 1])
    buyers = np.flatnonzero(buys)
    n_after = rng.choice(3, len(buyers), p=[0.5, 0.3, 0.2])
    tail_sess = np.repeat(buyers, 1 + n_after)
    tail_pos = np.arange(len(tail_sess)) - np.repeat(group_boundaries(tail_sess)[:-1], 1 + n_after)
    tail_item = np.where(tail_pos == 0, bought[tail_sess], rng.integers(0, n_items, len(tail_sess)))
    tail_type = np.where(tail_pos == 0, "purchase", "view").astype(object)

    sess = np.concatenate([sess, tail_sess])
    pos = np.concatenate([pos, n_browse[tail_sess] + tail_pos])
    item = np.concatenate([item, tail_item])
    etype = np.concatenate([etype, tail_type])
    order = np.lexsort((pos, sess))
    sess, pos, item, etype = sess[order], pos[order], item[order], etype[order]

    # Times: a session start with a daily traffic curve, then dwell gaps that
    # are longer with intent (and before a purchase).
    day = rng.integers(0, days, n)
    hour = rng.choice(24, n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    start_s = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    gaps = rng.lognormal(np.log(20) + 0.5 * intent[sess] + 0.5 * (etype == "purchase"), 0.8)
    gaps[pos == 0] = 0
    csum = np.cumsum(gaps)
    bounds = group_boundaries(sess)
    offset = csum - np.repeat(csum[bounds[:-1]], np.diff(bounds))
    seconds = np.round(start_s[sess] + offset).astype(np.int64)
    timestamp = (pd.Timestamp(start).to_datetime64().astype("datetime64[s]")
                 + seconds.astype("timedelta64[s]"))

    price = item_price[item]
    price[rng.random(len(price)) < 0.01] = np.nan
    session_ids = np.array([f"s{i:07d}" for i in rng.permutation(n)], dtype=object)
    df = pd.DataFrame({
        "session_id": session_ids[sess],
        "timestamp": timestamp,
        "event_type": etype,
        "item_id": item_ids[item],
        "title": titles[item],
        "price": price,
        "device": device[sess],
        "traffic_source": source[sess],
        "previous_orders": previous_orders[sess],
    })
    return df.iloc[np.argsort(seconds, kind="stable")].reset_index(drop=True)
