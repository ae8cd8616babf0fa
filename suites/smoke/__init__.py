"""Smoke suite: the zoo pipelines and encoders work in this cell."""
