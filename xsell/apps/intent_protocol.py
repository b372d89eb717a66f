"""Measuring the assistant's understanding: intents, few labels, unknown requests, entities.

* :func:`compare_classifiers` -- accuracy and macro-F1 (95% bootstrap CIs over messages)
  of the LM classifier and its two baselines on the test split, with accuracy by
  language-variation tag (colloquial, offensive, keyword-only, typos);
* :func:`learning_curve` -- macro-F1 with 3, 5, 10, 20, 50 labelled messages per intent,
  each size drawn several times (seeded);
* :func:`out_of_scope` -- intents held out of training play the unknown requests: AUROC
  of each in-scope score, and precision / recall of the calibrated threshold;
* :func:`entity_scores` -- span precision, recall and F1 of :mod:`xsell.apps.entities`.

Every classifier is trained on the training split only (plus the intent descriptions,
for both LM and TF-IDF); thresholds are set on the validation split; the test split is
scored once per question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from xsell.apps.entities import ENTITY_TYPES, extract_entities, span_f1
from xsell.apps.intents import (
    EmbeddingIntentClassifier,
    ScopeThreshold,
    TfidfIntentClassifier,
    ZeroShotIntentClassifier,
)
from xsell.data.support import TAG_NAMES, SupportMessages

#: The classifiers compared, by name.
CLASSIFIERS = {"MiniLM + LR": EmbeddingIntentClassifier, "TF-IDF + LR": TfidfIntentClassifier,
               "zero-shot MiniLM": ZeroShotIntentClassifier}
#: Labelled messages per intent on the learning curve.
CURVE_SIZES = (3, 5, 10, 20, 50)


def _bootstrap(values: np.ndarray, statistic, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = [statistic(i) for i in idx]
    return tuple(np.quantile(stats, [0.025, 0.975]).tolist())


def compare_classifiers(messages: SupportMessages, seed: int = 0, n_boot: int = 500,
                        classifiers: Mapping | None = None) -> dict:
    """Each classifier trained on the training split and scored on the test split.

    Returns
    -------
    dict
        ``table`` (classifier x accuracy / macro-F1 with CIs), ``by_tag`` (accuracy per
        language-variation tag), ``predictions`` (test messages with every classifier's
        prediction) and ``fitted`` (the classifiers).
    """
    from sklearn.metrics import f1_score

    parts = messages.split(seed=seed)
    train, test = parts["train"], parts["test"]
    y = test["intent"].to_numpy()
    rows, predictions, fitted = [], test[["text", "intent", "tags"]].copy(), {}
    for name, make in (classifiers or CLASSIFIERS).items():
        clf = make().fit(train["text"].tolist(), train["intent"].tolist())
        fitted[name] = clf
        pred = clf.predict(test["text"].tolist())
        predictions[name] = pred
        correct = pred == y
        f1 = f1_score(y, pred, average="macro")
        rows.append({
            "classifier": name, "accuracy": correct.mean(),
            "accuracy_ci": _bootstrap(correct, lambda i, c=correct: c[i].mean(), n_boot, seed),
            "macro_f1": f1,
            "macro_f1_ci": _bootstrap(correct, lambda i, p=pred: f1_score(y[i], p[i],
                                                                          average="macro"),
                                      n_boot, seed)})
    by_tag = {}
    tags = test["tags"].fillna("")
    for code, tag in TAG_NAMES.items():
        has = tags.str.contains(code, regex=False).to_numpy()
        if has.any():
            by_tag[f"{tag} ({code})"] = {name: float((predictions[name].to_numpy()[has]
                                                      == y[has]).mean())
                                         for name in fitted} | {"messages": int(has.sum())}
    return {"table": pd.DataFrame(rows).set_index("classifier"),
            "by_tag": pd.DataFrame(by_tag).T, "predictions": predictions, "fitted": fitted,
            "split": {k: len(v) for k, v in parts.items()}}


def learning_curve(messages: SupportMessages, sizes: Sequence[int] = CURVE_SIZES,
                   repeats: int = 3, seed: int = 0,
                   classifiers: Mapping | None = None) -> pd.DataFrame:
    """Macro-F1 on the test split with ``n`` labelled training messages per intent.

    Returns
    -------
    pandas.DataFrame
        One row per (classifier, n, draw): ``classifier``, ``per_intent``, ``draw``,
        ``macro_f1``.
    """
    from sklearn.metrics import f1_score

    parts = messages.split(seed=seed)
    train, test = parts["train"], parts["test"]
    smallest = int(train["intent"].value_counts().min())
    rows = []
    for n in sizes:
        if n > smallest:
            raise ValueError(f"{n} messages per intent asked, but an intent has only "
                             f"{smallest} training messages")
        for draw in range(repeats):
            sample = train.groupby("intent").sample(n=n, random_state=seed + draw)
            for name, make in (classifiers or {k: v for k, v in CLASSIFIERS.items()
                                               if k != "zero-shot MiniLM"}).items():
                clf = make().fit(sample["text"].tolist(), sample["intent"].tolist())
                f1 = f1_score(test["intent"], clf.predict(test["text"].tolist()),
                              average="macro")
                rows.append({"classifier": name, "per_intent": n, "draw": draw,
                             "macro_f1": f1})
    return pd.DataFrame(rows)


def out_of_scope(messages: SupportMessages, n_held: int = 5, draws: int = 5, seed: int = 0,
                 accept_rates: Sequence[float] = (0.95, 0.99)) -> pd.DataFrame:
    """Intents held out of training stand for requests the assistant does not know.

    For each draw, ``n_held`` intents (seeded) are removed from training; the test split's
    messages of those intents are the out-of-scope ones. Each in-scope score is measured
    by AUROC (in-scope vs out-of-scope); the LM's combined score's threshold is set on
    the validation split's in-scope messages (each of ``accept_rates`` accepted) and its
    precision and recall *at detecting out-of-scope messages* are reported.

    Returns
    -------
    pandas.DataFrame
        One row per draw: ``held`` (the intents), AUROC of ``MiniLM + LR (max prob.)``,
        ``MiniLM + LR (prob. + neighbours)``, ``TF-IDF + LR (max prob.)``, and per accept
        rate ``r``: ``oos_precision@r``, ``oos_recall@r`` and ``in_scope_accepted@r``.
    """
    from sklearn.metrics import roc_auc_score

    parts = messages.split(seed=seed)
    train, validation, test = parts["train"], parts["validation"], parts["test"]
    intents = np.array(sorted(messages.frame["intent"].unique()))
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(draws):
        held = sorted(rng.choice(intents, n_held, replace=False).tolist())
        known = train[~train["intent"].isin(held)]
        inside = ~test["intent"].isin(held).to_numpy()
        lm = EmbeddingIntentClassifier().fit(known["text"].tolist(), known["intent"].tolist())
        tfidf = TfidfIntentClassifier().fit(known["text"].tolist(), known["intent"].tolist())
        texts = test["text"].tolist()
        combined = lm.in_scope_score(texts)
        calibration = lm.in_scope_score(
            validation[~validation["intent"].isin(held)]["text"].tolist())
        row = {"held": ", ".join(held),
               "MiniLM + LR (max prob.)": roc_auc_score(inside, lm.max_probability(texts)),
               "MiniLM + LR (prob. + neighbours)": roc_auc_score(inside, combined),
               "TF-IDF + LR (max prob.)": roc_auc_score(inside, tfidf.max_probability(texts))}
        for rate in accept_rates:
            flagged = ~ScopeThreshold(rate).fit(calibration).in_scope(combined)
            true_oos = ~inside
            row[f"oos_precision@{rate:g}"] = float((flagged & true_oos).sum()
                                                   / max(flagged.sum(), 1))
            row[f"oos_recall@{rate:g}"] = float((flagged & true_oos).sum()
                                                / max(true_oos.sum(), 1))
            row[f"in_scope_accepted@{rate:g}"] = float((~flagged[inside]).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def entity_scores(messages: SupportMessages) -> pd.DataFrame:
    """Span precision / recall / F1 of the extracted entities against the labelled spans
    (all messages: the extractor learns nothing)."""
    frame = messages.frame
    predicted = [extract_entities(t) for t in frame["text"]]
    gold = [[(t, int(s), int(e))] if pd.notna(s) else []
            for t, s, e in zip(frame["entity_type"], frame["entity_start"], frame["entity_end"],
                               strict=True)]
    return pd.DataFrame(span_f1(predicted, gold, ENTITY_TYPES)).T
