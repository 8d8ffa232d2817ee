"""The AdvFace loop as users write it by hand, following two adversarial-attack libraries."""
