"""`budget:` in the language: limits on what a run (or a team state's agents) may spend on LLM calls."""

from __future__ import annotations

from pydantic import Field, model_validator

from agentfsm.spec.fields import LanguageModel


class BudgetSpec(LanguageModel):
    """Limits on LLM spending; once one is reached, the next LLM call fails with `limit.budget` (catchable)."""

    tokens: int | None = Field(None, ge=1, description="Input plus output tokens of every LLM call.")
    cost: float | None = Field(None, gt=0, description="USD, as the price table (or a binding's `price:`) gives it; "
                                                       "calls of a model without a price count as 0.")
    llm_calls: int | None = Field(None, ge=1, description="LLM calls (a failed call counts too).")

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.tokens is None and self.cost is None and self.llm_calls is None:
            raise ValueError("a budget needs at least one of tokens, cost, llm_calls")
        return self


BUDGET_HELP = ("Limits on LLM spending (tokens, cost in USD, llm_calls); the LLM call after one is reached fails "
               "with `limit.budget`, which `catch` can route (docs/observability.md, Budgets).")
