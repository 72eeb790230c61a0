"""Shipping: predict on files, export to ONNX, serve over HTTP."""
