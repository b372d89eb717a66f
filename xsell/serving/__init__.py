"""Serving fitted models: the bundle ``xsell fit --out`` writes and ``xsell serve`` loads,
and the HTTP API over it (FastAPI; ``pip install "xsell[serve]"``)."""
