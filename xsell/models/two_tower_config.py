"""The two-tower's settings as one checked record (what the training loop and objectives read).

:class:`~xsell.models.two_tower.TwoTower` keeps scikit-learn's conventions -- its
hyperparameters are its constructor's arguments, with their defaults and documentation
there -- and hands a :class:`TwoTowerConfig` of them to the training loop
(:mod:`xsell.models.two_tower_training`) and the objectives
(:mod:`xsell.models.two_tower_objectives`). Building one checks every choice, so a bad
setting is refused, by name, before the catalogue is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The accepted values of the settings that are choices.
CHOICES = {"item_features": ("text", "id", "text+id"), "text_items": ("all", "seen"),
           "user_tower": ("mean", "attention", "transformer", "text"),
           "targets": ("all", "new"), "objective": ("softmax", "mse")}


@dataclass(frozen=True)
class TwoTowerConfig:
    """Every setting of a two-tower model (meanings: :class:`~xsell.models.two_tower.TwoTower`).

    Raises
    ------
    ValueError
        On construction, naming a setting that is not allowed or a combination that is
        not implemented.
    """

    encoder: str
    pretrained: bool
    item_features: str
    text_items: str
    user_tower: str
    dim: int
    half_life: float | None
    max_history: int
    targets: str
    objective: str
    temperature: float
    logq: float
    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int
    validation_users: int
    history_text_items: int
    max_states_per_user: int | None
    id_dropout: float
    finetune_layers: int
    lora_rank: int
    finetune_lr: float
    seed: int
    progress: bool

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.user_tower == "text" and self.objective == "mse":
            raise ValueError("user_tower='text' is implemented for objective='softmax' only")
        if self.text_items == "seen" and self.finetune_layers:
            raise ValueError("fine-tuning refreshes every item's text embedding: it needs "
                             "text_items='all'")
        if self.finetune_layers and self.item_features == "id":
            raise ValueError("finetune_layers needs a text item tower (item_features "
                             "'text' or 'text+id')")

    @property
    def reads_text(self) -> bool:
        """Whether the LM encodes item texts (for the item tower or the text user tower)."""
        return self.item_features != "id" or self.user_tower == "text"

    @property
    def unit_vectors(self) -> bool:
        """User and item vectors are normalised for the softmax (cosine / temperature)."""
        return self.objective == "softmax"
