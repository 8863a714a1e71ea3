from .func import Predictor

__all__ = ["Predictor"]
