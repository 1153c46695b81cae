"""FreeMemory's value objects (freemem.config): what each accepts, the facade's few parameters, and the keyword
arguments of earlier releases, which keep working for one release with a DeprecationWarning."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from freemem import (
    Budget,
    CachePolicy,
    EveryNTokens,
    FoldPolicy,
    FreeMemory,
    LoopDetected,
    OverBudget,
    RoundPolicy,
    Triggers,
)
from freemem.core.errors import ConfigError
from freemem.core.prompt_cache import PRICE_MODELS, PriceModel


def _clock() -> float:
    return 1234.0


SUMMARIZER = FakeListChatModel(responses=["summary"])

#: Each old keyword argument, a value, and the same memory built with the value objects.
OLD_KWARGS: list[tuple[str, Any, dict[str, Any]]] = [
    ("every_tokens", 1000, {"triggers": Triggers(every_tokens=1000)}),
    ("on_loop", False, {"triggers": Triggers(on_loop=False)}),
    ("fold_share", 0.2, {"fold": FoldPolicy(share=0.2)}),
    ("fold_target", 0.8, {"fold": FoldPolicy(target=0.8)}),
    ("fold_keep_units", 2, {"fold": FoldPolicy(keep_units=2)}),
    ("digest_tokens", 200, {"fold": FoldPolicy(digest_tokens=200)}),
    ("summarizer", SUMMARIZER, {"fold": FoldPolicy(summarizer=SUMMARIZER)}),
    ("low_water", 0.8, {"cache": CachePolicy(low_water=0.8)}),
    ("clock", _clock, {"cache": CachePolicy(clock=_clock)}),
    ("marker", "[cut]", {"rounds": RoundPolicy(marker="[cut]")}),
    ("max_freed_share", 0.5, {"rounds": RoundPolicy(max_freed_share=0.5)}),
    ("max_rounds", 2, {"rounds": RoundPolicy(max_rounds=2)}),
    ("round_timeout", 5.0, {"rounds": RoundPolicy(timeout=5.0)}),
    ("fixed_tokens", 300, {"budget": Budget(4000, fixed_tokens=300)}),
    ("image_rule", "openai", {"budget": Budget(4000, image_rule="openai")}),
]


def _settings(memory: FreeMemory) -> dict[str, Any]:
    """Everything a memory's behaviour follows from, comparable (callables and models by identity)."""
    return {
        "triggers": memory.triggers, "fold": memory.fold, "cache": memory.cache, "rounds": memory.rounds,
        "budget": memory.budget, "request_budget": memory.request_budget, "fixed": memory.fixed_tokens,
        "image_rule": memory.image_rule, "digest": (memory.digest_tokens, memory.chat_digest_tokens),
        "clock": memory.clock, "marker": memory.rounds.marker,
        "summarizer": memory.fold.summarizer if memory.fold else None,
        "cleaner": (type(memory.cleaner), getattr(memory.cleaner, "budget", None),
                    getattr(memory.cleaner, "target", None), getattr(memory.cleaner, "fit_roles", None)),
    }


def test_the_facade_takes_at_most_ten_parameters() -> None:
    params = inspect.signature(FreeMemory).parameters  # self excluded; the deprecated catch-all included
    assert len(params) <= 10, list(params)
    assert list(params) == ["cleaner", "counter", "budget", "triggers", "protection", "fold", "cache", "rounds",
                            "archive", "deprecated"]


@pytest.mark.parametrize(("name", "value", "new"), OLD_KWARGS, ids=[k for k, _v, _n in OLD_KWARGS])
def test_each_old_keyword_argument_warns_and_builds_the_same_memory(name: str, value: Any,
                                                                     new: dict[str, Any]) -> None:
    budget = new.pop("budget", 4000)
    try:
        with pytest.deprecated_call(match=rf"FreeMemory\({name}=\.\.\.\) is deprecated"):
            old = FreeMemory(counter="approx", budget=4000, **{name: value})
    finally:
        if isinstance(budget, Budget):
            new["budget"] = budget
    current = FreeMemory(counter="approx", budget=budget, **{k: v for k, v in new.items() if k != "budget"})
    assert _settings(old) == _settings(current)


#: Each attribute of earlier releases, a memory, and the value it reads.
OLD_ATTRIBUTES: list[tuple[str, dict[str, Any], Any]] = [
    ("fold_share", {"fold": FoldPolicy(share=0.2)}, 0.2),
    ("fold_target", {"fold": FoldPolicy(target=0.8)}, 0.8),
    ("fold_keep_units", {"fold": False}, FoldPolicy().keep_units),  # read as before when folding is off
    ("summarizer", {"fold": FoldPolicy(summarizer=SUMMARIZER)}, SUMMARIZER),
    ("low_water", {"cache": CachePolicy(low_water=0.7)}, 0.7),
    ("marker", {"rounds": RoundPolicy(marker="[cut]")}, "[cut]"),
    ("max_freed_share", {"rounds": RoundPolicy(max_freed_share=0.5)}, 0.5),
    ("max_rounds", {"rounds": RoundPolicy(max_rounds=2)}, 2),
    ("round_timeout", {"rounds": RoundPolicy(timeout=None)}, None),
]


@pytest.mark.parametrize(("name", "given", "value"), OLD_ATTRIBUTES, ids=[a for a, _g, _v in OLD_ATTRIBUTES])
def test_each_old_attribute_reads_its_value_object_with_a_warning(name: str, given: dict[str, Any],
                                                                  value: Any) -> None:
    memory = FreeMemory(counter="approx", budget=4000, **given)
    with pytest.deprecated_call(match=rf"FreeMemory\.{name} is deprecated"):
        assert getattr(memory, name) == value
    with pytest.raises(AttributeError, match="no attribute 'fold_sharee'"):
        memory.fold_sharee  # type: ignore[attr-defined]  # noqa: B018
    assert copy.copy(memory).rounds is memory.rounds  # copies (``reserved``) do not trip on the old names


def test_old_and_new_arguments_of_one_feature_do_not_mix() -> None:
    with pytest.deprecated_call(), pytest.raises(ConfigError, match="fold_share inside the FoldPolicy"):
        FreeMemory(fold=FoldPolicy(), fold_share=0.2)
    with pytest.deprecated_call(), pytest.raises(ConfigError, match="low_water inside the CachePolicy"):
        FreeMemory(cache=CachePolicy(), low_water=0.5)
    with pytest.deprecated_call(), pytest.raises(ConfigError, match="fixed_tokens inside the Budget"):
        FreeMemory(budget=Budget(1000), fixed_tokens=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'fold_sharee'"):
        FreeMemory(fold_sharee=0.2)


def test_an_old_trigger_argument_beside_a_trigger_list_is_ignored_as_before() -> None:
    with pytest.deprecated_call():
        memory = FreeMemory(counter="approx", budget=1000, triggers=[OverBudget(1000)], every_tokens=10)
    assert memory.triggers == [OverBudget(1000)]


def test_fold_and_cache_take_a_switch_a_name_or_a_value_object() -> None:
    assert FreeMemory(counter="approx").fold == FoldPolicy()
    assert FreeMemory(counter="approx", fold=False).fold is None
    assert FreeMemory(counter="approx", fold=FoldPolicy(keep_units=6)).fold == FoldPolicy(keep_units=6)
    assert FreeMemory(counter="approx").cache == CachePolicy("anthropic")
    assert FreeMemory(counter="approx", cache="openai").cache == CachePolicy(PRICE_MODELS["openai"])
    own = PriceModel("mine", read=0.2, write=1.0, ttl_s=60)
    assert FreeMemory(counter="approx", cache=own).cache_ttl_s == 60
    assert FreeMemory(counter="approx", cache=None).cache is None
    assert FreeMemory(counter="approx", cache=CachePolicy("prefill", low_water=0.7)).cache_ttl_s is None
    with pytest.raises(ConfigError, match="fold must be"):
        FreeMemory(fold="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown price model|cannot read"):
        FreeMemory(cache="nope")


def test_triggers_and_budget() -> None:
    memory = FreeMemory(counter="approx", budget=Budget(2000, fixed_tokens=500))
    assert memory.request_budget == 2000 and memory.budget == 1500 and memory.fixed_tokens == 500
    assert memory.triggers == [EveryNTokens(5000), OverBudget(1500), LoopDetected()]
    assert FreeMemory(counter="approx", budget=2000) .triggers == Triggers().build(2000)
    assert FreeMemory(counter="approx", triggers=Triggers(every_tokens=None, on_loop=False)).triggers == []
    assert FreeMemory(counter="approx", budget=Budget(None, image_rule="openai")).image_rule == "openai"


@pytest.mark.parametrize(("make", "match"), [
    (lambda: Budget(0), "budget must be a positive"),
    (lambda: Budget(1000, fixed_tokens=1000), "leave no room"),
    (lambda: Budget(1000, fixed_tokens=-1), "non-negative"),
    (lambda: Budget(1000, image_rule="gemini"), "image"),
    (lambda: Triggers(every_tokens=-5), "every_tokens"),
    (lambda: FoldPolicy(share=0), "fold share"),
    (lambda: FoldPolicy(target=1.5), "fold target"),
    (lambda: FoldPolicy(keep_units=-1), "keep_units"),
    (lambda: FoldPolicy(digest_tokens=8), "digest_tokens"),
    (lambda: FoldPolicy(summarizer="gpt-4o"), "summarizer"),
    (lambda: CachePolicy(low_water=0), "low_water"),
    (lambda: CachePolicy(clock=3), "clock"),
    (lambda: RoundPolicy(max_rounds=0), "max_rounds"),
    (lambda: RoundPolicy(timeout=0), "RoundPolicy.timeout"),
    (lambda: RoundPolicy(max_freed_share=2.0), "max_freed_share"),
    (lambda: FreeMemory(budget="16k"), "budget must be"),  # type: ignore[arg-type]
    (lambda: FreeMemory(triggers=["over budget"]), "triggers must be"),  # type: ignore[list-item]
    (lambda: FreeMemory(rounds=3), "rounds must be"),  # type: ignore[arg-type]
    (lambda: FreeMemory(object()), "cleaner must be a freemem Cleaner"),  # type: ignore[arg-type]
])
def test_bad_settings_are_clear_errors(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_one_value_object_configures_several_memories() -> None:
    fold = FoldPolicy(keep_units=2, digest_tokens=120)
    small, large = FreeMemory(counter="approx", budget=1000, fold=fold), FreeMemory(counter="approx", budget=9000,
                                                                                    fold=fold)
    assert small.fold is large.fold and small.digest_tokens == large.digest_tokens == 120
    with pytest.raises(AttributeError):
        fold.keep_units = 3  # type: ignore[misc]
