"""Networks by name (`registry`): the BiLSTM tagger, sliding-window inference, the int8 ONNX Runtime form."""
