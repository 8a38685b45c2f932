"""stratocast: sparse weather observations → trained AI forecast → verified products."""

__version__ = "0.1.0"
