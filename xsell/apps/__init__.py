"""Application cases built on the fitted models (the book's "Application cases" chapter).

* :mod:`xsell.apps.search` -- personalised product search: BM25 and MiniLM retrieval
  (:mod:`xsell.apps.retrieval`, :mod:`xsell.apps.query`), re-ranked by the shopper's
  behaviour; its protocol in :mod:`xsell.apps.search_protocol`.
* :mod:`xsell.apps.assistant` -- a customer-service assistant grounded in the shopper's
  purchase log: intents (:mod:`xsell.apps.intents`), entities
  (:mod:`xsell.apps.entities`), measured by :mod:`xsell.apps.intent_protocol`.
"""
