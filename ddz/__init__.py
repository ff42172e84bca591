"""ddz: dataset distillation guided by pre-trained models."""

__version__ = "0.1.0"
