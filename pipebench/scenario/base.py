"""What every scenario model shares: strict types, and errors with our own messages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from pipebench.errors import did_you_mean

PosInt = Annotated[int, Field(ge=1)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]  # seeds feed 32-bit counter hashes
# How minibatches are drawn (objectives/blocklinear.py, SAMPLING_CODES)
Sampling = Literal["shuffle", "uniform", "sequential", "batch"]


def problem(message: str, sub: str = "") -> PydanticCustomError:
    """A validation error with our own message; `sub` extends the field path it names."""
    return PydanticCustomError("pipebench", "{message}", {"message": message, "sub": sub})


def unknown(what: str, word: object, choices: list[str], sub: str = "") -> PydanticCustomError:
    """An error for a name that is not one of `choices`."""
    hint = did_you_mean(str(word), choices)
    return problem(f"unknown {what} {word!r}{hint}; allowed: {', '.join(choices)}", sub)


class StrictModel(BaseModel):
    """Strict types, frozen, and unknown keys refused with a did-you-mean."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = list(cls.model_fields)
            for key in data:
                if key not in fields:
                    raise unknown("key", key, fields, sub=str(key))
        return data
