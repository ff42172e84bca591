"""Distillation: methods (DC, DSA, DM), PTM guidance (CLoM, CCLoM), synthetic sets, evaluation."""
