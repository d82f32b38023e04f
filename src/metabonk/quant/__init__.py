"""Quantization and export of MetaBonk's models: torchao formats per layer (`formats`, `apply`), safetensors + JSON
storage that the normal `load` reads back (`store`), per-layer sensitivity and hybrid precision (`sensitivity`),
drift against the fp32 model (`drift`), System 1 as ONNX for onnxruntime (`onnx_export`) and System 2's GGUF at
other llama.cpp levels (`gguf`)."""
