"""Query and product text, normalised the same way for both sides of a lexical match.

Shoppers type ``"Greek Yoghurts"``, ``"strawbery jam"`` or ``"the milk"``; the catalogue
says ``"Greek Yogurt"``, ``"Strawberry Jam"``, ``"Milk"``. :class:`QueryNormalizer`
lower-cases, splits on anything that is not a letter or digit, drops function words,
folds plurals to a singular stem (the same rule for queries and documents, so it need
not be linguistically exact, only consistent) and, for a query word the catalogue never
uses, substitutes the most frequent catalogue word one edit away (a deletion, insertion,
substitution or swap of neighbours). A query left with no content words is an error that
says so, before any retrieval runs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from xsell.errors import InputError

#: Function words that name no product. The list is short on purpose ("top", "free",
#: "light" or "whole" name products and stay).
STOP_WORDS = frozenset("""
a about an and any are as at be but buy by can do for from get give have i im in is it
its me my need of on or our please some something that the their them these this those
to us want we what where which with would you your
""".split())

#: Shortest word the spelling correction touches (shorter words are too ambiguous).
MIN_CORRECTABLE = 4

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class EmptyQueryError(InputError):
    """A search query with no content words (empty, or only function words)."""


def fold_plural(word: str) -> str:
    """A crude singular stem: ``berries -> berry``, ``tomatoes -> tomato``, ``boxes -> box``,
    ``apples -> apple``; ``glass``, ``hummus`` and ``swiss`` are left alone."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("oes", "xes", "ches", "shes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text``, plural-folded, function words kept."""
    return [fold_plural(w) for w in _WORD.findall(str(text).lower())]


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


class QueryNormalizer:
    """Turns text into the tokens a lexical index stores, correcting query typos.

    Parameters
    ----------
    vocabulary : iterable of str, optional
        Document tokens (repeated as often as they occur: frequency breaks ties between
        corrections). Without one, queries are not spell-corrected.
    stop_words : iterable of str
        Words dropped from queries and documents.

    Examples
    --------
    >>> norm = QueryNormalizer(["strawberry", "jam", "strawberry", "straw"])
    >>> norm.query_tokens("Strawbery Jams")
    ['strawberry', 'jam']
    """

    def __init__(self, vocabulary: Iterable[str] | None = None,
                 stop_words: Iterable[str] = STOP_WORDS):
        self.stop_words = frozenset(stop_words)
        self.frequency: Counter = Counter()
        # SymSpell-style index: every vocabulary word under each of its one-letter deletions.
        self._by_delete: dict[str, list[str]] = {}
        self.add_vocabulary(vocabulary or ())

    def add_vocabulary(self, vocabulary: Iterable[str]) -> None:
        """Count more document tokens (a new product's words become correct spellings)."""
        counts = Counter(vocabulary)
        for word in counts.keys() - self.frequency.keys():
            if len(word) >= MIN_CORRECTABLE:
                for d in _deletes(word):
                    self._by_delete.setdefault(d, []).append(word)
        self.frequency.update(counts)

    def document_tokens(self, text: str) -> list[str]:
        """Tokens of a product text (no correction: the catalogue defines the words)."""
        return [w for w in words(text) if w not in self.stop_words]

    def correct(self, word: str) -> str:
        """``word`` if the vocabulary has it (or it is short or a number), else the most
        frequent vocabulary word one edit away, else ``word`` unchanged."""
        if (not self.frequency or word in self.frequency or len(word) < MIN_CORRECTABLE
                or word.isdigit()):
            return word
        near = set(self._by_delete.get(word, ()))              # the query lost a letter
        for d in _deletes(word):
            if d in self.frequency:                            # the query gained a letter
                near.add(d)
            near.update(self._by_delete.get(d, ()))            # a letter changed or swapped
        if not near:
            return word
        return max(sorted(near), key=lambda w: self.frequency[w])

    def query_tokens(self, query: str) -> list[str]:
        """Normalised, corrected content words of a query.

        Raises
        ------
        EmptyQueryError
            The query is empty or has only function words.
        """
        if not isinstance(query, str):
            raise EmptyQueryError(f"the search query must be text, not {type(query).__name__}")
        tokens = [w for w in words(query) if w not in self.stop_words]
        if not tokens:
            what = "empty" if not query.strip() else "made only of words that name no product"
            raise EmptyQueryError(f"search query {query!r} is {what}; type what you are "
                                  "looking for, e.g. 'greek yogurt'")
        return [self.correct(w) for w in tokens]

    @classmethod
    def from_documents(cls, texts: Sequence[str],
                       stop_words: Iterable[str] = STOP_WORDS) -> QueryNormalizer:
        """A normaliser whose vocabulary is every token of ``texts``."""
        stop = frozenset(stop_words)
        return cls((w for t in texts for w in words(t) if w not in stop), stop)
