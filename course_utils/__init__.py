"""Helpers for the course notebooks. Import submodules explicitly, e.g.
``from course_utils import runtime, engine``; importing the package changes nothing."""

__version__ = "0.1.0"
