"""tabduel: on tabular data, can a well-found MLP match XGBoost, and what does it take to find it?"""

__version__ = "0.1.0"
