"""Backbone zoo: a sweep's calibration across backbones, coloured by pretraining protocol (app/zoo_view.py)."""

from __future__ import annotations

from app import zoo_view

zoo_view.render()
