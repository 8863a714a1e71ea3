from .func import Explainer

__all__ = ["Explainer"]
