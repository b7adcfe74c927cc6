"""Where the repository is, for tests that read its files or run its scripts (any wing, any depth)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
