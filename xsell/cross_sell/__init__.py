"""Cross-category cross-selling: department structure, basket completion, a category
control on any ranking, and "because you bought" explanations."""

from xsell.cross_sell.completion import BasketCompleter
from xsell.cross_sell.control import CategoryControl
from xsell.cross_sell.explain import Explainer
from xsell.cross_sell.transitions import DepartmentTransitions, department_lift
from xsell.models.registry import register

register("basket-completer", "xsell.cross_sell.completion:BasketCompleter")

__all__ = ["BasketCompleter", "CategoryControl", "DepartmentTransitions", "Explainer",
           "department_lift"]
