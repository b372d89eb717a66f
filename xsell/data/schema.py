"""The generic data format: column names, which are required, and what they mean.

Two CSV files (or two pandas frames) describe a shop:

``interactions.csv`` -- one row per (user, item) purchase or interaction

=============  ========  ==========================================================
column         required  meaning
=============  ========  ==========================================================
``user_id``    yes       opaque user identifier
``item_id``    yes       opaque item identifier; must exist in ``items.csv``
``basket_id``  no        rows sharing it form one order; absent: each row is a basket
``timestamp``  no        ISO date/time or unix seconds
``seq``        no        order of the basket within the user's history (numeric)
``quantity``   no        units bought (numeric)
``rating``     no        explicit rating (numeric)
=============  ========  ==========================================================

When neither ``timestamp`` nor ``seq`` is given, file order is time order.

``items.csv`` -- the catalogue, one row per item

===============  ========  ========================================================
column           required  meaning
===============  ========  ========================================================
``item_id``      yes       unique item identifier
``title``        yes       product name, non-empty
``category``     no        category path, levels joined by ``" > "``
``description``  no        free text
``brand``        no        brand name
``price``        no        numeric price
===============  ========  ========================================================
"""

from __future__ import annotations

USER = "user_id"
ITEM = "item_id"
BASKET = "basket_id"
TIMESTAMP = "timestamp"
SEQ = "seq"
QUANTITY = "quantity"
RATING = "rating"

TITLE = "title"
CATEGORY = "category"
DESCRIPTION = "description"
BRAND = "brand"
PRICE = "price"

INTERACTION_REQUIRED = (USER, ITEM)
INTERACTION_OPTIONAL = (BASKET, TIMESTAMP, SEQ, QUANTITY, RATING)
ITEM_REQUIRED = (ITEM, TITLE)
ITEM_OPTIONAL = (CATEGORY, DESCRIPTION, BRAND, PRICE)

#: Separator between levels of a category path, e.g. ``"produce > fresh fruits"``.
CATEGORY_SEP = " > "

#: Standard file names of the generic format.
INTERACTIONS_FILE = "interactions.csv"
ITEMS_FILE = "items.csv"
