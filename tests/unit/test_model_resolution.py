"""Which served model a request means (api/validation/models.py), with a registry stand-in."""

from __future__ import annotations

import pytest

from api.validation.models import resolve_model
from embedserve.errors import InvalidRequest, NotFound
from embedserve.fleet.registry import ModelCard, ModelKind, ServedModel

MINI = ServedModel(card=ModelCard(name="mini", dim=8), live_workers=1)
RANKER = ServedModel(card=ModelCard(name="ranker", kind=ModelKind.RERANK), live_workers=1)


class Registry:
    def __init__(self, *models: ServedModel, only: ServedModel | None = None):
        self._models, self._only = {m.card.name: m for m in models}, only

    def lookup(self, name):
        return self._models.get(name)

    def only(self, kind):
        return self._only if self._only is not None and self._only.card.kind == kind else None


def test_a_name_resolves_to_its_model_of_the_asked_kind():
    registry = Registry(MINI, RANKER)
    assert resolve_model(registry, "mini") is MINI
    assert resolve_model(registry, "ranker", ModelKind.RERANK) is RANKER
    assert resolve_model(registry, "ranker", kind=None) is RANKER


def test_no_name_means_the_only_model_of_the_kind_else_model_required():
    assert resolve_model(Registry(MINI, only=MINI), None) is MINI
    with pytest.raises(InvalidRequest) as info:
        resolve_model(Registry(MINI, RANKER), None)
    assert (info.value.code, info.value.param) == ("model_required", "model")


@pytest.mark.parametrize("name,kind,error,code", [
    ("nope", ModelKind.EMBEDDING, NotFound, "model_not_found"),
    ("nope", None, NotFound, "model_not_found"),
    ("ranker", ModelKind.EMBEDDING, InvalidRequest, "wrong_model_kind"),
    ("mini", ModelKind.RERANK, InvalidRequest, "wrong_model_kind"),
])
def test_refusals_name_the_model_field(name, kind, error, code):
    with pytest.raises(error) as info:
        resolve_model(Registry(MINI, RANKER), name, kind)
    assert (info.value.code, info.value.param) == (code, "model")
