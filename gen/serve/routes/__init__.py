"""One module per page family; each has a ``router`` with its pages, actions and JSON API."""

from __future__ import annotations

from fastapi import APIRouter


def all_routers() -> list[APIRouter]:
    from gen.serve.routes import classifiers, compare, datasets, generators, home, jobs, searches

    return [module.router for module in (home, datasets, generators, compare, classifiers, searches, jobs)]
