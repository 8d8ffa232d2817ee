"""Face recognition encoders, one class per model format, and the one place a user's encoder is
resolved (``loader.as_encoder``): ``base`` (the contract and :class:`TorchEncoder`), ``onnx``,
``tflite``, their differentiable twins (``onnx_torch``, ``tflite_torch``), the model input
contracts (``input_spec``), SFace (``sface``), dlib's ResNet (``dlib``, the independent judge)
and batched inference (``embed``)."""
