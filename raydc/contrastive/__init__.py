"""Contrastive objectives and the models built on them (SimCLR's InfoNCE, LFSS)."""
