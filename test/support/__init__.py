"""Helpers shared by the tests: data they make, the golden weight fill, spinning real nodes.

`SHARED` is the project's ../shared folder of reference facts and real data;
tests that need it skip cleanly where it is absent.
"""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PIXEL_STACK = SHARED / "data" / "pixel6pro_stack"
