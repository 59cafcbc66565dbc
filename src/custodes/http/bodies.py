"""Bodies both faces take: the API as JSON, the console as a form (`Annotated[Model, Form()]`),
so that a field's name and limits are written once."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


# An official authorised to sign for an agency, in a role, for a period. (No docstring: it
# would become the schema's description.)
class NewOfficial(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "agency": "Department of Labor",
                    "name": "A. Secretary",
                    "title": "Secretary of Labor",
                    "role": "head",
                    "valid_from": "2026-01-20",
                    "valid_to": None,
                }
            ]
        }
    )
    agency: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=64)
    valid_from: date
    valid_to: date | None = None
