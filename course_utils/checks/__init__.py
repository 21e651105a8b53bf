"""Graded checks: one-line verdicts, and one named check per question of the lessons.

A check cell in a lesson reads as one question and one call::

    # NBVAL_CHECK_OUTPUT
    # Question 1
    from course_utils import checks
    with checks.question(1):
        checks.vgg.check_make_layers(make_layers)

``verdicts`` holds the primitives (``check_shape``, ``check_same_as``, ...: each prints one
``PASS``/``FAIL`` line); ``question`` turns a question that is not answered yet, or an answer that
crashes, into one line so that Run All goes on to the last cell (in JupyterLab and in Colab,
which ignores cell tags). The lesson modules hold the checks of each lesson's questions.
"""

from course_utils.checks.question import question
from course_utils.checks.verdicts import (CountTorchCalls, check_close, check_equal, check_param_count,
                                          check_same_as, check_same_settings, check_same_shapes,
                                          check_same_training, check_shape, count_params, labelled,
                                          randomize_batchnorm)

__all__ = ["CountTorchCalls", "check_close", "check_equal", "check_param_count", "check_same_as",
           "check_same_settings", "check_same_shapes", "check_same_training", "check_shape", "count_params",
           "labelled", "question", "randomize_batchnorm"]

# The checks of each lesson's questions, one module per topic (``checks.vgg.check_make_layers``).
from course_utils.checks import macs, resnet, tensors, training, vgg  # noqa: E402  (after the primitives)
from course_utils.checks import folder, resnet_unet, segmentation, unet  # noqa: E402  (lessons 03-06)
from course_utils.checks import distributed  # noqa: E402  (lesson 08)
