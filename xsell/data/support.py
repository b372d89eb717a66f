"""Customer-service messages labelled with intents and entity spans.

The real data is the Bitext customer-support sample (4,514 messages, 27 intents in 11
categories, entity spans; CDLA-Sharing-1.0), read from a folder -- never committed:
``$XSELL_DATA_DIR/bitext-customer-support/customer_support_intents.csv``. Its rows are
grouped by intent, so every split here is stratified and seeded.

Without that file, :func:`make_support_messages` builds a small seeded stand-in from
templates (the same intents and columns, far less varied language), so that the
assistant runs anywhere; results on it say little about real messages, and every report
names which of the two it came from.

Columns of :attr:`SupportMessages.frame`: ``text``, ``intent``, ``category``, ``tags``
(Bitext's language-variation codes: Q colloquial, W offensive, K keyword-only, Z
typos, ...), ``entity_type``, ``entity_start``, ``entity_end`` (character offsets into
``text``; missing where the message has no labelled entity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xsell.data.csvread import read_generic_csv
from xsell.errors import InputError

#: Sub-folder of the data folder and file name of the Bitext sample.
SUPPORT_DIR = "bitext-customer-support"
SUPPORT_FILE = "customer_support_intents.csv"
#: Bitext's columns xsell reads (the file's names).
SOURCE_COLUMNS = {"instruction": "text", "intent": "intent", "category": "category",
                  "tags": "tags", "entity_type": "entity_type",
                  "start_offset": "entity_start", "end_offset": "entity_end"}
#: Columns the file must have.
REQUIRED = ("instruction", "intent")

#: The intents of the Bitext sample, by category (also those of the built-in stand-in).
INTENT_CATEGORIES = {
    "ACCOUNT": ("create_account", "delete_account", "edit_account", "recover_password",
                "registration_problems", "switch_account"),
    "CANCELLATION_FEE": ("check_cancellation_fee",),
    "CONTACT": ("contact_customer_service", "contact_human_agent"),
    "DELIVERY": ("delivery_options", "delivery_period"),
    "FEEDBACK": ("complaint", "review"),
    "INVOICE": ("check_invoice", "get_invoice"),
    "NEWSLETTER": ("newsletter_subscription",),
    "ORDER": ("cancel_order", "change_order", "place_order", "track_order"),
    "PAYMENT": ("check_payment_methods", "payment_issue"),
    "REFUND": ("check_refund_policy", "get_refund", "track_refund"),
    "SHIPPING_ADDRESS": ("change_shipping_address", "set_up_shipping_address"),
}
INTENTS = tuple(i for group in INTENT_CATEGORIES.values() for i in group)

#: Language-variation tags reported separately (Bitext's TAGS.md).
TAG_NAMES = {"Q": "colloquial", "W": "offensive", "K": "keyword-only", "Z": "typos",
             "P": "polite"}


@dataclass
class SupportMessages:
    """Labelled customer-service messages.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per message (columns in the module docstring).
    name : str
        What the data is, for reports.
    info : dict
        ``source`` (and ``path`` for a file).
    """

    frame: pd.DataFrame
    name: str
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def intents(self) -> list[str]:
        """The intents present, sorted."""
        return sorted(self.frame["intent"].unique())

    @property
    def is_real(self) -> bool:
        """Whether these are the real Bitext messages (not the built-in stand-in)."""
        return self.info.get("source") == "bitext"

    def with_tag(self, code: str) -> np.ndarray:
        """Boolean mask of messages carrying a language-variation tag (``"Q"``, ``"Z"``...)."""
        return self.frame["tags"].fillna("").str.contains(code, regex=False).to_numpy()

    def split(self, test_size: float = 0.3, validation_size: float = 0.1,
              seed: int = 0) -> dict[str, pd.DataFrame]:
        """Seeded train / validation / test split, stratified by intent.

        Returns
        -------
        dict
            ``{"train", "validation", "test"}`` -> rows of :attr:`frame` (original index).
        """
        from sklearn.model_selection import train_test_split

        if not 0 < test_size < 1 or not 0 <= validation_size < 1 - test_size:
            raise ValueError(f"test_size ({test_size}) and validation_size "
                             f"({validation_size}) must be shares that leave training rows")
        labels = self.frame["intent"]
        rest, test = train_test_split(self.frame.index, test_size=test_size,
                                      stratify=labels, random_state=seed)
        if validation_size == 0:
            return {"train": self.frame.loc[rest], "validation": self.frame.iloc[:0],
                    "test": self.frame.loc[test]}
        train, validation = train_test_split(
            rest, test_size=validation_size / (1 - test_size), stratify=labels.loc[rest],
            random_state=seed)
        return {"train": self.frame.loc[np.sort(train)],
                "validation": self.frame.loc[np.sort(validation)],
                "test": self.frame.loc[np.sort(test)]}


def find_support_file(folder: str | os.PathLike) -> Path | None:
    """The Bitext file in ``folder`` (itself or its ``bitext-customer-support/``), or None."""
    folder = Path(folder)
    for candidate in (folder / SUPPORT_DIR / SUPPORT_FILE, folder / SUPPORT_FILE):
        if candidate.is_file():
            return candidate
    return None


def read_support_csv(path: str | os.PathLike) -> SupportMessages:
    """Read a Bitext-format CSV file, or raise :class:`~xsell.errors.InputError` naming
    the file, column, line and value that is wrong."""
    path = Path(path)
    raw = read_generic_csv(path, role="support messages", required=REQUIRED,
                           dtype={"instruction": str, "intent": str},
                           text_columns=["instruction", "intent"])
    missing = [c for c in REQUIRED if c not in raw]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found "
                         f"{', '.join(map(str, raw.columns))}); a support-message file needs "
                         "'instruction' (the customer's message) and 'intent'")
    frame = pd.DataFrame({new: raw[old] if old in raw else np.nan
                          for old, new in SOURCE_COLUMNS.items()})
    blank = frame["text"].fillna("").str.strip().eq("") | frame["intent"].fillna("").eq("")
    if blank.any():
        line = int(np.flatnonzero(blank.to_numpy())[0]) + 2  # 1-based, after the header
        raise InputError(f"{path}, line {line}: empty 'instruction' or 'intent' "
                         f"({int(blank.sum())} row(s) in all); every message needs its text "
                         "and its intent")
    for column in ("entity_start", "entity_end"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    has_span = frame["entity_start"].notna() & frame["entity_end"].notna()
    lengths = frame["text"].str.len()
    bad = has_span & ((frame["entity_start"] < 0) | (frame["entity_start"] >= lengths)
                      | (frame["entity_start"] >= frame["entity_end"]))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}, line {i + 2}: entity span start_offset="
                         f"{frame['entity_start'].iloc[i]:g}, end_offset="
                         f"{frame['entity_end'].iloc[i]:g} does not start inside the message "
                         f"({lengths.iloc[i]} characters)")
    frame, repaired = _trim_spans(frame, has_span.to_numpy())
    frame.loc[~has_span, ["entity_type", "entity_start", "entity_end"]] = np.nan
    frame["entity_start"] = frame["entity_start"].astype("Int64")
    frame["entity_end"] = frame["entity_end"].astype("Int64")
    return SupportMessages(frame.reset_index(drop=True), "Bitext customer support (sample)",
                           {"source": "bitext", "path": str(path), "spans_trimmed": repaired,
                            "spans": int(has_span.sum())})


def _trim_spans(frame: pd.DataFrame, has_span: np.ndarray) -> tuple[pd.DataFrame, int]:
    """Spans ending past the message or on punctuation, trimmed to the entity's text.

    The Bitext offsets were computed before the entity values were filled in: the start
    is right, but about one order-id span in six ends past the message or takes the comma
    after the id ("3707955617,"). The end is clipped to the message and trailing spaces
    and punctuation are dropped; the number trimmed is returned (and reported).
    """
    frame = frame.copy()
    ends = frame["entity_end"].to_numpy(dtype=float, na_value=np.nan).copy()
    starts = frame["entity_start"].to_numpy(dtype=float, na_value=np.nan)
    trimmed = 0
    for i in np.flatnonzero(has_span):
        text, start, end = frame.at[i, "text"], int(starts[i]), int(ends[i])
        new_end = min(end, len(text))
        while new_end > start + 1 and not text[new_end - 1].isalnum():
            new_end -= 1
        if new_end != end:
            ends[i], trimmed = new_end, trimmed + 1
    frame["entity_end"] = ends
    return frame, trimmed


def load_support_messages(data: str | os.PathLike | None = None,
                          seed: int = 0) -> SupportMessages:
    """Messages from ``data`` (a folder or the CSV file), else ``$XSELL_DATA_DIR``, else
    the built-in stand-in (:func:`make_support_messages`).

    Raises
    ------
    FileNotFoundError
        ``data`` is given but holds no support-message file.
    """
    if data is not None:
        path = Path(data)
        found = path if path.is_file() else find_support_file(path) if path.is_dir() else None
        if found is None:
            raise FileNotFoundError(f"{path}: no {SUPPORT_FILE} there (nor in "
                                    f"{path / SUPPORT_DIR}); it is Bitext's customer-support "
                                    "sample, see data/README.md")
        return read_support_csv(found)
    env = os.environ.get("XSELL_DATA_DIR")
    if env:
        found = find_support_file(env)
        if found is not None:
            return read_support_csv(found)
    return make_support_messages(seed=seed)


# ---------------------------------------------------------------------------- the stand-in

#: Phrases of each intent the stand-in composes messages from.
_PHRASES = {
    "create_account": ("open a new account", "create an account", "sign up", "register"),
    "delete_account": ("delete my account", "close my account", "remove my profile"),
    "edit_account": ("edit my account details", "update my profile", "change my user info"),
    "recover_password": ("reset my password", "I forgot my password", "recover my password"),
    "registration_problems": ("I can't register", "the sign-up form fails",
                              "registration error"),
    "switch_account": ("switch to another account", "change to the premium plan",
                       "use my other profile"),
    "check_cancellation_fee": ("is there a cancellation fee", "what does cancelling cost",
                               "early termination charge"),
    "contact_customer_service": ("contact customer service", "customer support hours",
                                 "how do I reach support"),
    "contact_human_agent": ("talk to a human", "speak with an agent", "a real person please"),
    "delivery_options": ("what delivery options are there", "shipping methods",
                         "can you deliver on weekends"),
    "delivery_period": ("when will my delivery arrive", "how long does shipping take",
                        "delivery time"),
    "complaint": ("I want to file a complaint", "this service is terrible",
                  "I am unhappy with my order experience"),
    "review": ("leave a review", "give feedback on the service", "rate my experience"),
    "check_invoice": ("check my invoice", "see my bill", "look at the invoice"),
    "get_invoice": ("download my invoice", "send me the bill", "get a copy of the invoice"),
    "newsletter_subscription": ("subscribe to the newsletter", "stop the newsletter emails",
                                "newsletter sign-up"),
    "cancel_order": ("cancel my order", "I don't want my order anymore", "cancel purchase"),
    "change_order": ("change my order", "add an item to my order", "modify my purchase"),
    "place_order": ("place an order", "I want to buy something", "make a purchase"),
    "track_order": ("where is my order", "track my order", "order status"),
    "check_payment_methods": ("which payment methods do you accept", "can I pay with paypal",
                              "payment options"),
    "payment_issue": ("my payment failed", "problem with my card payment",
                      "I was charged twice"),
    "check_refund_policy": ("what is your refund policy", "can I get money back",
                            "refund rules"),
    "get_refund": ("I want a refund", "give me my money back", "refund my order"),
    "track_refund": ("where is my refund", "status of my refund", "refund not received"),
    "change_shipping_address": ("change my shipping address", "update the delivery address",
                                "ship to a different address"),
    "set_up_shipping_address": ("add a shipping address", "set up a delivery address",
                                "save a new address"),
}
_FRAMES = ("{p}", "{p} please", "can you help me {p}", "i need to {p}", "hi, {p}?",
           "how do i {p}", "{p} asap")
_ORDER_INTENTS = ("cancel_order", "change_order", "track_order", "get_refund")


def make_support_messages(n_per_intent: int = 40, seed: int = 0) -> SupportMessages:
    """A seeded stand-in for the Bitext messages: every intent, templated language.

    Order-related messages carry an order id half of the time (a labelled span), like the
    real data's ``order_id`` entities.
    """
    rng = np.random.default_rng(seed)
    category_of = {i: c for c, group in INTENT_CATEGORIES.items() for i in group}
    rows = []
    for intent in INTENTS:
        for _ in range(n_per_intent):
            phrase = _PHRASES[intent][int(rng.integers(len(_PHRASES[intent])))]
            text = _FRAMES[int(rng.integers(len(_FRAMES)))].format(p=phrase)
            span = (np.nan, np.nan, np.nan)
            if intent in _ORDER_INTENTS and rng.random() < 0.5:
                number = str(int(rng.integers(10**6, 10**10)))
                text = f"{text} (order {number})"
                start = text.index(number)
                span = ("order_id", start, start + len(number))
            rows.append({"text": text, "intent": intent, "category": category_of[intent],
                         "tags": "B", "entity_type": span[0], "entity_start": span[1],
                         "entity_end": span[2]})
    frame = pd.DataFrame(rows)
    frame["entity_start"] = frame["entity_start"].astype("Int64")
    frame["entity_end"] = frame["entity_end"].astype("Int64")
    return SupportMessages(frame, "built-in support messages (templated stand-in)",
                           {"source": "synthetic", "seed": seed})
