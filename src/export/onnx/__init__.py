"""ONNX writers: the float graph, the export profiles as passes, the int8 QDQ plan and its writer, the
exact rewrites of the mobile profile, and the .ort conversion.
"""
