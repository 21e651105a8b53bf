"""Grading a class, in three steps, one module each (``python -m course_utils.grade`` runs them):

- ``build``: the graded copy of a submission, with the reference's check cells matched by cell id;
- ``sandbox`` (with ``worker`` and ``kernel``): running that copy in a folder of its own, on copies
  of the references and of ``course_utils``, with time and memory limits;
- ``report``: scoring each question from the cells' structured results, and the result files.
"""
