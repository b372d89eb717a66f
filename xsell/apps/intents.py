"""What a customer's message asks for: intent classifiers and out-of-scope detection.

Three classifiers share one interface (``fit(texts, intents)``, ``predict_proba``,
``predict``, ``classes_``), scikit-learn style:

* :class:`EmbeddingIntentClassifier` -- MiniLM sentence embeddings (the encoder the item
  tower uses, cached the same way) and a logistic regression;
* :class:`TfidfIntentClassifier` -- the classic baseline: TF-IDF over character n-grams
  and words, logistic regression;
* :class:`ZeroShotIntentClassifier` -- no labelled messages at all: each intent's short
  description (:data:`INTENT_DESCRIPTIONS`) is embedded, and a message gets the intent
  whose description is nearest.

A message may ask for none of the intents a classifier knows ("do you sell oat milk?",
or an intent never seen in training). :meth:`EmbeddingIntentClassifier.in_scope_score`
scores how much a message looks like the known intents, and :class:`ScopeThreshold`
turns the score into a decision with a threshold calibrated on in-scope validation
messages only (a target share of them accepted), so no out-of-scope example is needed to
set it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xsell.checkpoint import Saveable
from xsell.text import DEFAULT_MODEL, TextEncoder

#: A one-line description of every Bitext intent, written for the zero-shot classifier
#: (from the intent names and categories only, not from the messages).
INTENT_DESCRIPTIONS = {
    "create_account": "open a new customer account, sign up",
    "delete_account": "delete or close my customer account",
    "edit_account": "edit or update my account details and profile",
    "recover_password": "I forgot my password, reset or recover it",
    "registration_problems": "problems or errors when registering or signing up",
    "switch_account": "switch to another account or change account type",
    "check_cancellation_fee": "is there a fee or penalty for cancelling",
    "contact_customer_service": "how to contact customer service, support hours",
    "contact_human_agent": "talk to a human agent, a real person",
    "delivery_options": "which delivery or shipping options are available",
    "delivery_period": "how long delivery takes, when my delivery will arrive",
    "complaint": "make a complaint, I am unhappy with the service",
    "review": "leave a review or feedback about the service",
    "check_invoice": "check or look at my invoice or bill",
    "get_invoice": "get or download a copy of my invoice",
    "newsletter_subscription": "subscribe to or unsubscribe from the newsletter",
    "cancel_order": "cancel an order I placed",
    "change_order": "change or modify an order, add or remove items",
    "place_order": "place a new order, buy products",
    "track_order": "where is my order, track the status of my order",
    "check_payment_methods": "which payment methods are accepted",
    "payment_issue": "a problem with a payment, my payment failed",
    "check_refund_policy": "what is the refund policy, can I get my money back",
    "get_refund": "I want a refund for an order",
    "track_refund": "where is my refund, status of my refund",
    "change_shipping_address": "change the shipping address of my delivery",
    "set_up_shipping_address": "set up or add a new shipping address",
}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def with_descriptions(texts: Sequence[str], intents: Sequence[str],
                      descriptions: dict[str, str] | None) -> tuple[list[str], np.ndarray]:
    """Training messages plus one labelled example per intent: its description.

    With three to ten messages per intent, the description is a useful extra example
    (label-name augmentation); with many it changes little. Only intents present in
    ``intents`` get theirs, so held-out intents stay unseen.
    """
    texts, intents = [str(t) for t in texts], np.asarray(intents, dtype=object)
    if not descriptions:
        return texts, intents
    present = [i for i in dict.fromkeys(intents.tolist()) if i in descriptions]
    return texts + [descriptions[i] for i in present], np.concatenate([intents, present])


class IntentClassifier:
    """What every intent classifier here offers: ``predict`` over ``predict_proba``, the
    top probability, and the training data (messages plus descriptions) they learn from."""

    classes_: np.ndarray
    descriptions: bool | dict

    def _training_data(self, texts, intents) -> tuple[list[str], np.ndarray]:
        if len(texts) != len(intents):
            raise ValueError(f"{len(texts)} messages but {len(intents)} intents")
        if len(texts) == 0:
            raise ValueError("no training messages")
        table = (INTENT_DESCRIPTIONS if self.descriptions is True
                 else self.descriptions or None)
        return with_descriptions(texts, intents, table)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable intent of each message."""
        return self.classes_[self.predict_proba(texts).argmax(axis=1)]

    def max_probability(self, texts: Sequence[str]) -> np.ndarray:
        """The top intent's probability (the simplest in-scope score)."""
        return self.predict_proba(texts).max(axis=1)


class EmbeddingIntentClassifier(IntentClassifier, Saveable):
    """Logistic regression on MiniLM sentence embeddings.

    Parameters
    ----------
    C : float
        Inverse L2 strength of the logistic regression (unit-length embeddings give small
        logits, so regularisation is weak; 100 was chosen on the validation messages).
    descriptions : bool or dict
        Add each intent's description as one more training example (``True``:
        :data:`INTENT_DESCRIPTIONS`; a dict: those; ``False``: messages only).
    encoder : str
        Sentence encoder (:class:`xsell.text.TextEncoder`; vectors are cached on disk).
    neighbours : int
        Training messages averaged in the nearest-neighbour part of
        :meth:`in_scope_score`.
    progress : bool
        Show a progress bar while encoding.

    Examples
    --------
    >>> clf = EmbeddingIntentClassifier().fit(texts, intents)   # doctest: +SKIP
    >>> clf.predict(["where is my package?"])                   # doctest: +SKIP
    array(['track_order'], dtype=object)
    """

    def __init__(self, C: float = 100.0, descriptions: bool | dict = True,
                 encoder: str = DEFAULT_MODEL, neighbours: int = 5, progress: bool = False):
        self.C = C
        self.descriptions = descriptions
        self.encoder = encoder
        self.neighbours = neighbours
        self.progress = progress

    _derived_state = frozenset({"dataset_", "encoder_", "model_"})

    def _encode(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        if not hasattr(self, "encoder_"):
            self.encoder_ = TextEncoder(self.encoder, progress=self.progress)
        return self.encoder_.encode([str(t) for t in texts], store=store)

    def _fitted_state(self) -> dict:
        # The logistic regression as its arrays (no pickle): rebuilt on load.
        return {**super()._fitted_state(), "classes_": [str(c) for c in self.classes_],
                "coef_": self.model_.coef_, "intercept_": self.model_.intercept_}

    def _restore_state(self, state: dict, dataset) -> None:
        from sklearn.linear_model import LogisticRegression

        state = dict(state)
        model = LogisticRegression(C=self.C, max_iter=3000)
        model.coef_, model.intercept_ = state.pop("coef_"), state.pop("intercept_")
        model.classes_ = np.array(state.pop("classes_"), dtype=object)
        model.n_features_in_ = model.coef_.shape[1]
        super()._restore_state(state, dataset)
        self.model_, self.classes_ = model, model.classes_

    def fit(self, texts: Sequence[str], intents: Sequence[str]) -> EmbeddingIntentClassifier:
        """Encode the messages and fit the logistic regression."""
        from sklearn.linear_model import LogisticRegression

        texts, intents = self._training_data(texts, intents)
        X = self._encode(texts)
        self.model_ = LogisticRegression(C=self.C, max_iter=3000).fit(X, intents)
        self.classes_ = self.model_.classes_
        self.train_vectors_ = X
        return self

    def predict_proba(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        """Probability of each intent (columns in ``classes_`` order); ``store``: keep the
        messages' vectors in the on-disk embedding cache (not a served shopper's)."""
        return self.model_.predict_proba(self._encode(texts, store))

    def in_scope_score(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        """How much each message looks like the intents trained on (higher = in scope).

        The mean of two parts on the same scale: the top intent's probability, and the
        mean cosine similarity to the ``neighbours`` closest training messages. The
        first says the classifier is sure; the second that the message lies where the
        training messages lie -- a message from an unseen intent can be confidently
        misclassified, but it is rarely close to many training messages.
        """
        X = self._encode(texts, store)
        probability = self.model_.predict_proba(X).max(axis=1)
        sims = X @ self.train_vectors_.T
        k = min(self.neighbours, sims.shape[1])
        nearest = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
        return (probability + nearest) / 2


class TfidfIntentClassifier(IntentClassifier):
    """Logistic regression on TF-IDF of character n-grams (2-5, within words) and words.

    Parameters
    ----------
    C : float
        Inverse L2 strength of the logistic regression (chosen on the validation messages).
    descriptions : bool or dict
        Add each intent's description as one more training example, as
        :class:`EmbeddingIntentClassifier` does (both learn from the same data).
    """

    def __init__(self, C: float = 100.0, descriptions: bool | dict = True):
        self.C = C
        self.descriptions = descriptions

    def fit(self, texts: Sequence[str], intents: Sequence[str]) -> TfidfIntentClassifier:
        """Fit the vocabulary and the logistic regression."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        features = make_union(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True))
        texts, intents = self._training_data(texts, intents)
        self.model_ = make_pipeline(features, LogisticRegression(C=self.C, max_iter=3000))
        self.model_.fit(texts, intents)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        """Probability of each intent (columns in ``classes_`` order; ``store`` is
        accepted for the common interface: nothing is cached here)."""
        return self.model_.predict_proba([str(t) for t in texts])


class ZeroShotIntentClassifier(IntentClassifier):
    """The intent whose description is nearest in MiniLM space; no labelled messages.

    Parameters
    ----------
    descriptions : dict
        ``{intent: description}`` (default :data:`INTENT_DESCRIPTIONS`).
    temperature : float
        Softmax temperature over the cosine similarities (probabilities for
        :meth:`predict_proba`; the ranking does not depend on it).
    encoder : str
        Sentence encoder.
    """

    def __init__(self, descriptions: dict[str, str] | None = None, temperature: float = 0.05,
                 encoder: str = DEFAULT_MODEL):
        self.descriptions = descriptions
        self.temperature = temperature
        self.encoder = encoder

    def fit(self, texts: Sequence[str] | None = None,
            intents: Sequence[str] | None = None) -> ZeroShotIntentClassifier:
        """Embed the descriptions of the intents in ``intents`` (all described ones when
        ``None``); the messages themselves are not used."""
        described = dict(INTENT_DESCRIPTIONS if self.descriptions is None else self.descriptions)
        wanted = sorted(described) if intents is None else sorted(set(intents))
        missing = [i for i in wanted if i not in described]
        if missing:
            raise ValueError(f"no description for intent(s) {', '.join(missing)}; pass "
                             "descriptions={intent: text}")
        self.encoder_ = TextEncoder(self.encoder, progress=False)
        self.classes_ = np.array(wanted, dtype=object)
        self.description_vectors_ = self.encoder_.encode([described[i] for i in wanted])
        return self

    def similarities(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        """Cosine similarity of each message to each intent description."""
        vectors = self.encoder_.encode([str(t) for t in texts], store=store)
        return vectors @ self.description_vectors_.T

    def predict_proba(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        """Softmax of the similarities over ``classes_`` (``store``: cache the vectors)."""
        return _softmax(self.similarities(texts, store) / self.temperature)


class ScopeThreshold(Saveable):
    """Accept a message as in scope when its score reaches a threshold.

    The threshold is the ``1 - accept_rate`` quantile of in-scope validation scores:
    ``accept_rate`` of messages like the validation ones are accepted, whatever the
    out-of-scope messages look like (none are needed to set it).

    Parameters
    ----------
    accept_rate : float
        Share of in-scope validation messages to accept.
    """

    def __init__(self, accept_rate: float = 0.95):
        self.accept_rate = accept_rate

    def fit(self, in_scope_scores: np.ndarray) -> ScopeThreshold:
        """Set the threshold from scores of in-scope messages."""
        if not 0 < self.accept_rate <= 1:
            raise ValueError(f"accept_rate must lie in (0, 1], not {self.accept_rate}")
        scores = np.asarray(in_scope_scores, dtype=float)
        if not len(scores):
            raise ValueError("no in-scope scores to calibrate the threshold on")
        self.threshold_ = float(np.quantile(scores, 1 - self.accept_rate))
        return self

    def in_scope(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score is accepted."""
        return np.asarray(scores) >= self.threshold_
