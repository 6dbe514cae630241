"""Training recipes, one readable module each, behind one small interface (:class:`Recipe`)."""

from finetune.recipes.base import Recipe
from finetune.recipes.full import FullFineTune
from finetune.recipes.ia3 import IA3
from finetune.recipes.lora import LoRA
from finetune.recipes.qlora import QLoRA

RECIPES: dict[str, Recipe] = {r.name: r for r in (QLoRA(), LoRA(), FullFineTune(), IA3())}


def get_recipe(method: str) -> Recipe:
    try:
        return RECIPES[method]
    except KeyError:
        raise ValueError(f"unknown training method {method!r}; choose one of: {', '.join(RECIPES)}") from None


__all__ = ["RECIPES", "Recipe", "get_recipe"]
