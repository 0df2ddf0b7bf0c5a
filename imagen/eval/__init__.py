"""Evaluation of shapes images: caption compliance judged on the pixels, and sharpness of SR outputs.

    from imagen.eval import judge, evaluate, sharpness, compare_to_bicubic
    judge(image, "a small red circle at the top left on a blue background")
    # {"background": True, "object_color": True, "position": True, "shape": True, "size": True, "overall": True}
    evaluate(images, captions)["one_object"]["shape"]   # accuracy in [0, 1]

Images are PIL images, `(3, H, W)` tensors in [-1, 1], or `(H, W, 3)` uint8 arrays, at any resolution.
The command line is `imagen-eval` (`python -m imagen.eval`).
"""

from imagen.eval.compliance import ATTRIBUTES, OBJECT_ATTRIBUTES, Judgement, analyze, evaluate, judge, summarize
from imagen.eval.sharpness import compare_to_bicubic, sharpness

__all__ = ["ATTRIBUTES", "OBJECT_ATTRIBUTES", "Judgement", "analyze", "compare_to_bicubic", "evaluate", "judge",
           "sharpness", "summarize"]
