"""The models the package trains and ships: decoders (``decoders``), the synthetic world's face
encoder CNN (``face_encoder``), safetensors files holding weights and config (``serialization``),
the weights fingerprint (``fingerprint``) and the shipped default models (``defaults``)."""
