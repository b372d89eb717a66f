"""Order ids, invoice ids and amounts in a customer's message.

Rules, not a learnt tagger: the entities a shop's assistant must resolve are numbers
with a shape (an order id is a run of five or more digits, an invoice id the same behind
``#`` or after "invoice"/"bill", an amount a number behind ``$`` or before "dollars"),
and a rule that states the shape is exact where it applies and can be read by whoever
maintains it. :func:`span_f1` measures them against labelled spans.

Each entity is an :class:`Entity` with character offsets into the message, so the
assistant can quote exactly what it understood.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Entity types extracted.
ENTITY_TYPES = ("order_id", "invoice_id", "refund_amount")

#: A run of at least five digits, maybe behind "#" or glued to a word ("order732201349959"),
#: not inside a longer number or an amount.
_ID = re.compile(r"(?<![\d.,$])(#?)(\d{5,})(?![\w])")
#: Words that make a number an invoice id when they come shortly before it.
_INVOICE_WORDS = re.compile(r"\b(invoice|invoices|bill|bills|receipt)\b", re.IGNORECASE)
_ORDER_WORDS = re.compile(r"\b(order|orders|purchase|purchases|basket)\b", re.IGNORECASE)
#: How far back (characters) a keyword is looked for.
_CONTEXT = 40
#: An amount such as "$160", "$ 12.50", "160 dollars", "12 usd", "€20" or "20 euros".
_AMOUNT = re.compile(
    r"(?:[$€£]\s?(\d+(?:[.,]\d{1,2})?)(?![\d]))"
    r"|(?:(?<![\w.])(\d+(?:[.,]\d{1,2})?)\s?(?:dollars?|usd|bucks|euros?|eur)\b)",
    re.IGNORECASE)


@dataclass(frozen=True)
class Entity:
    """One extracted entity: its type, character offsets and text (``text[start:end]``)."""

    type: str
    start: int
    end: int
    text: str

    @property
    def value(self) -> str:
        """The entity's value without decoration (``"#00108"`` -> ``"00108"``)."""
        return self.text.lstrip("#")


def _last_keyword(pattern: re.Pattern, text: str, end: int) -> int:
    """Position of the last match of ``pattern`` ending before ``end`` (within reach), or -1."""
    window_start = max(0, end - _CONTEXT)
    found = [m.start() + window_start for m in pattern.finditer(text[window_start:end])]
    return found[-1] if found else -1


def extract_entities(text: str) -> list[Entity]:
    """Order ids, invoice ids and amounts in ``text``, in order of position.

    Examples
    --------
    >>> extract_entities("where is order 2539329?")
    [Entity(type='order_id', start=15, end=22, text='2539329')]
    >>> [e.type for e in extract_entities("I paid $160 for invoice #00108")]
    ['refund_amount', 'invoice_id']
    """
    text = str(text)
    out: list[Entity] = []
    for m in _ID.finditer(text):
        hash_sign, digits = m.group(1), m.group(2)
        invoice = _last_keyword(_INVOICE_WORDS, text, m.start())
        order = _last_keyword(_ORDER_WORDS, text, m.start())
        if invoice > order or (hash_sign and order < 0):
            out.append(Entity("invoice_id", m.start(), m.end(), text[m.start():m.end()]))
        else:  # an order id is the bare number, without a '#'
            out.append(Entity("order_id", m.start(2), m.end(2), digits))
    for m in _AMOUNT.finditer(text):
        group = 1 if m.group(1) is not None else 2
        out.append(Entity("refund_amount", m.start(group), m.end(group), m.group(group)))
    return sorted(out, key=lambda e: e.start)


def span_f1(predicted: Sequence[Iterable[Entity]],
            gold: Sequence[Iterable[tuple[str, int, int]]],
            types: Sequence[str] = ENTITY_TYPES) -> dict[str, dict[str, float]]:
    """Exact-match span precision, recall and F1 per entity type, over all messages.

    Parameters
    ----------
    predicted : sequence
        Extracted :class:`Entity` lists, one per message.
    gold : sequence
        ``(type, start, end)`` labels, one iterable per message.

    Returns
    -------
    dict
        ``{type: {"precision", "recall", "f1", "n_gold", "n_predicted"}}``.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} messages")
    out = {}
    for kind in types:
        tp = n_pred = n_gold = 0
        for pred, true in zip(predicted, gold, strict=True):
            p = {(e.start, e.end) for e in pred if e.type == kind}
            t = {(s, e) for k, s, e in true if k == kind}
            tp += len(p & t)
            n_pred += len(p)
            n_gold += len(t)
        precision = tp / n_pred if n_pred else float("nan")
        recall = tp / n_gold if n_gold else float("nan")
        f1 = (2 * precision * recall / (precision + recall)
              if n_pred and n_gold and precision + recall > 0 else 0.0)
        out[kind] = {"precision": precision, "recall": recall, "f1": f1,
                     "n_gold": n_gold, "n_predicted": n_pred}
    return out
