"""TFLite writer: the mobile-profile ONNX graph as a TensorFlow computation, converted by TensorFlow's
TFLite converter and checked with LiteRT.
"""
