"""The joint phase: SR-loss gradients flow back into the degradation flow."""
