"""SimCLR's InfoNCE: the contrastive loss of resnet18 pretraining and clustering (it imports nothing of raydc)."""
