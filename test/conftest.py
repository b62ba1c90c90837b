import sys
from pathlib import Path

# Tests import helpers such as golden_fill from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
