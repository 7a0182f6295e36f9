"""Export for mobile runtimes: MindIR (dynamic H/W), ONNX float (dynamic H/W) and int8 QDQ ONNX."""
