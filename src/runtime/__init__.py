"""Running exported files (.onnx, .ort, .mindir, .tflite) as predictors' networks: runners, the metadata the
writers store and the runners read, fixed-shape windows, tensor layouts, and reading .tflite files with LiteRT.
Imported by evaluation and inference (src.engine) and by the writers' checks (src.export); imports no writer.
"""
