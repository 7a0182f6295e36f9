"""Export and exported-file running: ``export.py``'s engine (:mod:`src.export.exporter`) writes MindIR
(dynamic H/W, or fixed for MindSpore Lite), float and int8 QDQ ONNX (desktop or mobile profile), ORT,
TFLite (float32, float16 or full-integer int8) and, on Ascend, AIR files, checked against MindSpore
(``export_check``); the runners (:mod:`src.runtime.runners`, :mod:`src.runtime.tflite_runner`) run
.onnx / .ort / .mindir / .tflite files as predictors' networks."""
