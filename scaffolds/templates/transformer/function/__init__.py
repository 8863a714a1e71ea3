from .func import Transformer

__all__ = ["Transformer"]
